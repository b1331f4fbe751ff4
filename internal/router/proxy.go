package router

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/workflows"
)

// upstream is one preview URL and the reverse proxy to it, built once and
// reused by every request until a wake returns a different URL. It is also
// the proxy's RoundTripper, which is where an upstream that fell asleep is
// noticed, woken and (for idempotent requests) retried.
type upstream struct {
	raw    string
	target *url.URL
	proxy  *httputil.ReverseProxy
	p      *preview
	rt     *Router
}

// upstreamFor returns p's upstream for the URL a wake returned: the current
// one when the URL is unchanged, a new one otherwise.
func (rt *Router) upstreamFor(p *preview, raw string) (*upstream, error) {
	if cur := p.up.Load(); cur != nil && cur.raw == raw {
		return cur, nil
	}
	target, err := url.Parse(raw)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return nil, fmt.Errorf("wake preview %s: unusable preview URL %q", p.id, raw)
	}
	u := &upstream{raw: raw, target: target, p: p, rt: rt}
	u.proxy = &httputil.ReverseProxy{
		Rewrite:        u.rewrite,
		Transport:      u,
		FlushInterval:  -1, // stream: dev servers send SSE and chunked HMR updates
		ErrorHandler:   u.proxyError,
		ModifyResponse: u.modifyResponse,
		BufferPool:     rt.buffers,
		ErrorLog:       slog.NewLogLogger(rt.log.Handler(), slog.LevelWarn),
	}
	p.up.Store(u)
	return u, nil
}

func (u *upstream) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(u.target)   // also sends the upstream's host, not the preview host
	u.rt.setForwarded(pr) // not SetXForwarded: only trusted proxies' X-Forwarded-* count
	delete(pr.Out.Header, headerRepoKey)
	delete(pr.Out.Header, headerPRKey)
}

// modifyResponse hardens a preview's response before the client sees it:
// its cookies become host-only, and an upgraded connection is closed once
// idle for UpgradeIdleTimeout.
func (u *upstream) modifyResponse(resp *http.Response) error {
	hostOnlyCookies(resp.Header)
	if u.rt.auth != nil {
		// A preview must not replace or plant the router's own cookies.
		dropCookies(resp.Header, u.rt.auth.CookieNames())
	}
	if e := u.p.vis.Load(); e == nil || e.vis != workflows.VisibilityPublic {
		privateCaching(resp.Header)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols && u.rt.upgradeIdle > 0 {
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			resp.Body = newIdleConn(rwc, u.rt.upgradeIdle)
		}
	}
	return nil
}

// RoundTrip sends req to the preview. When the preview answers 503 (its
// machine fell asleep) or cannot be reached, the preview is marked cold; an
// idempotent request without a body is retried once after a wake, anything
// else gets the 503 (with Retry-After) while a wake starts in the background.
// A 503 right after a wake is the app's own and is passed through as it is.
func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	tr := trackOf(req.Context())
	if tr != nil {
		tr.sent = time.Now()
	}
	resp, err := u.roundTripReleased(req)
	if !asleep(resp, err) {
		return resp, err
	}
	if err == nil && u.rt.clock()-u.p.wokenAt.Load() < int64(appUnavailableGrace) {
		return resp, nil
	}
	u.p.markCold()
	if !retryable(req) {
		return u.passAsleep(resp, err, tr)
	}
	return u.retryAfterWake(req, resp, tr)
}

// passAsleep answers a request that cannot be retried with the preview's
// answer (its 503, given a Retry-After) or error, while a wake starts in
// the background.
func (u *upstream) passAsleep(resp *http.Response, err error, tr *track) (*http.Response, error) {
	if tr != nil {
		tr.path = metrics.PathError
	}
	u.rt.wakeInBackground(u.p)
	if err != nil {
		return nil, err
	}
	if resp.Header.Get("Retry-After") == "" {
		resp.Header.Set("Retry-After", "1")
	}
	return resp, nil
}

// retryAfterWake drops the preview's answer (resp, nil after an error),
// wakes the preview and sends req again.
func (u *upstream) retryAfterWake(req *http.Request, resp *http.Response, tr *track) (*http.Response, error) {
	if resp != nil {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		resp.Body.Close()
	}
	if tr != nil {
		tr.path = metrics.PathCold
	}
	next, err := u.rt.wake(req.Context(), u.p)
	if err != nil {
		return nil, &wakeError{err}
	}
	if tr != nil {
		tr.sent = time.Now()
	}
	// Just woken: whatever the preview answers now is the answer.
	return u.rt.transport.RoundTrip(retarget(req, u.target, next.target))
}

// asleep reports an answer that means the machine is not serving: the 503
// a Dedalus preview gives while its machine sleeps, or a refused connection
// (a preview URL that a redeploy replaced).
func asleep(resp *http.Response, err error) bool {
	if err != nil {
		var op *net.OpError
		return errors.As(err, &op) && op.Op == "dial"
	}
	return resp.StatusCode == http.StatusServiceUnavailable
}

// isTimeout: the preview accepted the request but did not answer in time.
func isTimeout(err error) bool {
	var ne net.Error
	var op *net.OpError
	return errors.As(err, &ne) && ne.Timeout() && !(errors.As(err, &op) && op.Op == "dial")
}

// retryable: sending the request twice cannot do harm, and there is no body
// that would have to be kept for the second attempt.
func retryable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}

// retarget points an outgoing request at another upstream, when a wake
// returned a different preview URL.
func retarget(req *http.Request, from, to *url.URL) *http.Request {
	if from.Scheme == to.Scheme && from.Host == to.Host && from.Path == to.Path {
		return req
	}
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = to.Scheme, to.Host, ""
	rel := strings.TrimPrefix(req.URL.Path, strings.TrimSuffix(from.Path, "/"))
	out.URL.Path = strings.TrimSuffix(to.Path, "/") + rel
	if req.URL.RawPath != "" {
		rel = strings.TrimPrefix(req.URL.RawPath, strings.TrimSuffix(from.EscapedPath(), "/"))
		out.URL.RawPath = strings.TrimSuffix(to.EscapedPath(), "/") + rel
	}
	return out
}

// wakeError is a wake that failed while retrying a request, answered like
// a wake that failed before proxying.
type wakeError struct{ err error }

func (e *wakeError) Error() string { return e.err.Error() }
func (e *wakeError) Unwrap() error { return e.err }

// proxyError answers a request the proxy could not complete.
func (u *upstream) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if tr := trackOf(r.Context()); tr != nil {
		tr.path, tr.sent = metrics.PathError, time.Time{}
	}
	if r.Context().Err() != nil {
		w.WriteHeader(http.StatusBadGateway) // the client went away
		return
	}
	var we *wakeError
	switch {
	case errors.As(err, &we):
		if tr := trackOf(r.Context()); tr != nil {
			tr.path = errorPath(we.err)
		}
		u.rt.writeWakeError(w, r, u.p.target, we.err)
	case isTimeout(err):
		// The preview is up but slow (UpstreamHeaderTimeout): not a reason
		// to wake it.
		u.rt.log.Info("preview answer timed out", "workflow_id", u.p.id, "err", err)
		writeText(w, http.StatusGatewayTimeout, "The preview of "+u.p.target.String()+" did not answer in time.")
	case asleep(nil, err):
		u.p.markCold()
		w.Header().Set("Retry-After", "1")
		writeText(w, http.StatusServiceUnavailable, "The preview of "+u.p.target.String()+" is waking up. Retry in a moment.")
	default:
		u.p.markCold()
		u.rt.log.Warn("preview proxy failed", "workflow_id", u.p.id, "err", err)
		writeText(w, http.StatusBadGateway, "The preview of "+u.p.target.String()+" did not answer.")
	}
}
