package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
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
	if d.raw == nil {
		return 0, errors.New("relay: the delivery has no raw call")
	}
	r.calls.Store(d.id, d.raw)
	defer r.calls.Delete(d.id)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(d.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/harness")
	req.Header.Set("X-GitHub-Event", d.event)
	req.Header.Set("X-GitHub-Delivery", d.id)
	req.Header.Set("X-Hub-Signature-256", d.sig)
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
