package intake_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/metrics"
)

// slowUpload opens a connection and sends the headers of a delivery that
// announces length bytes of body and sends only the first few: an
// unauthenticated client trickling (or stalling) its upload.
func slowUpload(t *testing.T, addr string, length int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = fmt.Fprintf(c, "POST /webhooks/github HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-GitHub-Event: pull_request\r\n"+
		"X-Hub-Signature-256: sha256=00\r\nContent-Length: %d\r\n\r\n{\"action\":\"", addr, length)
	require.NoError(t, err)
	return c
}

// gauge reads drydock_webhook_bodies_reading.
func gauge(t *testing.T, reg *metrics.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "drydock_webhook_bodies_reading "); ok {
			return v
		}
	}
	return ""
}

// uploadAnswer is the answer to a slow upload: its status and Retry-After.
type uploadAnswer struct {
	status     int
	retryAfter string
}

// startSlowUploads starts n slow uploads of DefaultMaxBody bytes to addr;
// their answers arrive on answers, and wg is done once every upload is
// answered or its connection closed.
func startSlowUploads(t *testing.T, addr string, n int) (conns []net.Conn, answers chan uploadAnswer, wg *sync.WaitGroup) {
	answers = make(chan uploadAnswer, n)
	wg = new(sync.WaitGroup)
	for range n {
		c := slowUpload(t, addr, intake.DefaultMaxBody)
		conns = append(conns, c)
		wg.Go(func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return // closed by the test while its body was being read
			}
			resp.Body.Close()
			answers <- uploadAnswer{resp.StatusCode, resp.Header.Get("Retry-After")}
		})
	}
	return conns, answers, wg
}

// Forty slow unsigned uploads hold at most MaxConcurrentBodies readers (so at
// most that many bodies in memory); the others are answered 503 with
// Retry-After without their bodies being read; nothing reaches a router; once
// the slow clients are gone a signed delivery is accepted.
func TestSlowUnsignedUploadsAreBounded(t *testing.T) {
	const slots, uploads = 8, 40
	reg := metrics.New("webhook-bounded-test")
	rt := &countingRouter{}
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: rt, Logger: quietLogger(),
		Metrics: metrics.NewWebhook(reg), MaxConcurrentBodies: slots, BodyWait: 20 * time.Millisecond})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	conns, answers, wg := startSlowUploads(t, addr, uploads)
	// Every upload past the cap is refused while the first ones still hold
	// their slots (none of them will ever finish its body).
	for range uploads - slots {
		select {
		case a := <-answers:
			assert.Equal(t, http.StatusServiceUnavailable, a.status)
			assert.Equal(t, "5", a.retryAfter)
		case <-time.After(30 * time.Second):
			t.Fatal("the uploads past the cap were not refused")
		}
	}
	assert.Equal(t, fmt.Sprint(slots), gauge(t, reg), "bodies being read now")
	assert.Equal(t, slots, h.BodiesReadPeak(), "never more bodies read at once than the cap")
	select {
	case a := <-answers:
		t.Fatalf("a slow upload inside the cap was answered %d before its body arrived", a.status)
	default:
	}

	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	require.Eventually(t, func() bool { return gauge(t, reg) == "0" }, 10*time.Second, 10*time.Millisecond, "slots freed")
	assert.Empty(t, rt.routed(), "nothing unauthenticated was routed")

	body := []byte(`{"action":"opened","repository":{"owner":{"login":"acme"}}}`)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/github", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(secret), body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusAccepted, resp.StatusCode, "a signed delivery is accepted afterwards")
	assert.Equal(t, []string{"pull_request/opened"}, rt.routed())
	assert.Equal(t, slots, h.BodiesReadPeak())
}

// A body announced larger than the limit is answered 413 before a byte of it
// is read (the client sent none); one without Content-Length is cut off at
// the limit. Neither reaches a router.
func TestOversizedBodyIsRefusedUnread(t *testing.T) {
	reg := metrics.New("webhook-oversized-test")
	rt := &countingRouter{}
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: rt, Logger: quietLogger(),
		Metrics: metrics.NewWebhook(reg)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	c := slowUpload(t, srv.Listener.Addr().String(), intake.DefaultMaxBody+1)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "answered without waiting for the body")
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)

	// Chunked, no Content-Length: read up to the limit, then 413.
	big := bytes.Repeat([]byte("x"), intake.DefaultMaxBody+1)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/github", bytes.NewReader(big))
	require.NoError(t, err)
	req.ContentLength = -1 // sent chunked
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(secret), big))
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)

	// A signed body just under the limit is read and routed.
	ok := append([]byte(`{"action":"opened","pad":"`), bytes.Repeat([]byte("x"), intake.DefaultMaxBody-64)...)
	ok = append(ok, `"}`...)
	r, _ := post(t, h, "pull_request", ok, nil)
	assert.Equal(t, http.StatusAccepted, r.Code)
	assert.Equal(t, []string{"pull_request/opened"}, rt.routed(), "only the delivery within the limit was routed")

	mrec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(mrec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Contains(t, mrec.Body.String(), `drydock_webhook_deliveries_total{action="",event="unauthenticated",outcome="rejected",reason="too_large"} 2`)
}

// The limit is configurable, within GitHub's own cap.
func TestBodyLimitOptions(t *testing.T) {
	for _, o := range []intake.Options{{MaxBody: -1}, {MaxBody: intake.MaxBody + 1}, {MaxConcurrentBodies: -1}} {
		o.Secret, o.Allowed = secret, intake.AllowEveryone()
		_, err := intake.New(o)
		assert.Error(t, err, "%+v", o)
	}
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), MaxBody: 100, Logger: quietLogger()})
	require.NoError(t, err)
	r, out := post(t, h, "ping", []byte(`{"zen":"`+strings.Repeat("x", 100)+`"}`), nil)
	assert.Equal(t, http.StatusRequestEntityTooLarge, r.Code)
	assert.Equal(t, "body larger than 100 bytes", out["reason"])
}
