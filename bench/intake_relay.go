package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/testing/harness"
)

// intakeRelay is the intake's floor for the rate: an HTTP server in this
// process that reads a delivery whole and makes the raw call for it (the
// Go client's very same call, through the same client as the raw side),
// and nothing else: no signature check, no decoding, no routing. What it
// costs over the raw call is one HTTP hop in front of Temporal on this
// machine, which any webhook intake pays; the webhook's rate against the
// relay's is what Drydock's own intake adds to it.
type intakeRelay struct {
	tc    client.Client
	http  *http.Client
	url   string
	srv   *http.Server
	calls sync.Map // delivery ID → its raw call
}

// startRelay serves the relay on a loopback port; deliveries are sent with
// the same HTTP client (and so the same connection pool) as the webhook's.
func startRelay(tc client.Client, hc *http.Client) (*intakeRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &intakeRelay{tc: tc, http: hc, url: "http://" + ln.Addr().String() + "/webhooks/github"}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *intakeRelay) close() { _ = r.srv.Close() }

func (r *intakeRelay) serve(w http.ResponseWriter, req *http.Request) {
	if _, err := io.Copy(io.Discard, req.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	call, ok := r.calls.LoadAndDelete(req.Header.Get("X-GitHub-Delivery"))
	if !ok {
		http.Error(w, "unknown delivery", http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	if err := call.(func(context.Context, client.Client) error)(ctx, r.tc); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// deliver sends d to the relay as GitHub sends it to the webhook (the same
// body and headers) and returns the relay's status.
func (r *intakeRelay) deliver(ctx context.Context, d delivery) (int, error) {
	r.calls.Store(d.id, d.raw)
	defer r.calls.Delete(d.id) // when the relay never got it
	return harness.PostDelivery(ctx, r.http, r.url, d.event, d.id, d.body, d.sig)
}
