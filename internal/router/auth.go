package router

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/previewauth"
	"github.com/drydock-dev/drydock/workflows"
)

// Visibility: before it wakes, proxies or touches anything, the router asks
// the preview's workflow who may see it (the status query: a query never
// wakes a machine) and caches the answer for VisibilityTTL. A public preview
// is served as before. Any other (org, private, and "" from runs before the
// setting) needs a session of a GitHub user with access (previewauth);
// without login configured it is refused with 403. A refused request wakes
// nothing, touches nothing and is not activity.

// DefaultVisibilityTTL is how long a preview's visibility is reused.
const DefaultVisibilityTTL = 5 * time.Minute

// visibilityTimeout bounds one visibility query.
const visibilityTimeout = 10 * time.Second

// VisibilityQuerier answers a preview's visibility without waking it.
// TemporalWaker implements it with the status query. Errors are the
// Waker's: ErrUnknownPreview, ErrUnavailable.
type VisibilityQuerier interface {
	Visibility(ctx context.Context, workflowID string) (string, error)
}

// Visibility asks the preview's workflow for its visibility (QueryStatus).
func (w *TemporalWaker) Visibility(ctx context.Context, workflowID string) (string, error) {
	v, err := w.c.QueryWorkflow(ctx, workflowID, "", workflows.QueryStatus)
	if err != nil {
		err = classify(ctx, workflowID, err)
		if errors.Is(err, ErrUnknownPreview) || errors.Is(err, ErrPreviewGone) {
			return "", err
		}
		return "", fmt.Errorf("%w: visibility of %s: %w", ErrUnavailable, workflowID, err)
	}
	var st workflows.PreviewStatus
	if err := v.Get(&st); err != nil {
		return "", fmt.Errorf("%w: visibility of %s: %w", ErrUnavailable, workflowID, err)
	}
	return st.Visibility, nil
}

// visEntry is a cached visibility.
type visEntry struct {
	vis   string
	until int64 // router clock
}

// loginOff is the answer to a non-public preview on a router without login.
const loginOff = "This preview is not public, and login is not configured on this router (ROUTER_GITHUB_CLIENT_ID), so nobody can open it here."

// gate decides whether r may reach preview p; when not, it has answered.
func (rt *Router) gate(w http.ResponseWriter, r *http.Request, p *preview, now int64) bool {
	vis, err := rt.visibilityOf(r.Context(), p, now)
	if err != nil {
		rt.metrics.Request(errorPath(err), 0, false)
		rt.writeWakeError(w, r, p.target, err)
		return false
	}
	if vis == workflows.VisibilityPublic {
		return true
	}
	if !rt.gateLogin(w, r, p, vis) {
		rt.metrics.Request(metrics.PathLogin, 0, false)
		return false
	}
	return true
}

// gateLogin lets a request for a non-public preview through only with a
// session whose user may see the repository; when not, it has answered.
func (rt *Router) gateLogin(w http.ResponseWriter, r *http.Request, p *preview, vis string) bool {
	if rt.auth == nil {
		writeText(w, http.StatusForbidden, loginOff)
		return false
	}
	if _, hm := rt.mapper.parseHost(r.Host); hm != matchOK {
		// The header form: no preview host to hold a session.
		writeText(w, http.StatusForbidden, "This preview is not public: open it at its preview host to sign in.")
		return false
	}
	if r.URL.Path == previewauth.SessionPath || r.URL.Path == previewauth.LogoutPath {
		rt.auth.ServeSession(w, r)
		return false
	}
	repo := previewauth.Repo{Owner: p.target.Owner, Name: p.target.Repo}
	v, login := rt.auth.Check(r, repo, vis)
	if v != previewauth.Allowed {
		rt.auth.Refuse(w, r, v, login, repo, vis)
		return false
	}
	if crossSite(r) {
		writeText(w, http.StatusForbidden, "This preview is not public and does not answer requests made by other sites (another preview's page included): open it directly.")
		return false
	}
	rt.auth.StripCookie(r.Header)
	return true
}

// crossSite reports a request to a non-public preview that another origin's
// page made with the user's session: every preview host is the same site
// for the browser, so SameSite=Lax sends the session cookie along with a
// fetch, a form post or a WebSocket from another preview, and WebSockets
// (or an app that echoes Origin in CORS) let that page read the answer.
// Refused: any request whose Origin is not the preview's own, and
// same-site or cross-site requests other than top-level navigations (a
// link to the preview still works).
func crossSite(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return true
		}
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-site", "cross-site":
		return r.Header.Get("Sec-Fetch-Mode") != "navigate"
	}
	return false
}

// visibilityOf returns p's visibility from the cache or the workflow (one
// query per preview at a time). While Temporal is unavailable, an expired
// answer is reused rather than failing every request of a preview.
func (rt *Router) visibilityOf(ctx context.Context, p *preview, now int64) (string, error) {
	e := p.vis.Load()
	if e != nil && now < e.until {
		return e.vis, nil
	}
	if err := p.negative(now); err != nil {
		return "", err
	}
	ch := rt.flights.DoChan("visibility/"+p.id, func() (any, error) { return rt.queryVisibility(p) })
	select {
	case res := <-ch:
		if res.Err != nil {
			// A stale answer is reused only when it is not public: a
			// preview made private must not stay open while Temporal is down.
			if e != nil && e.vis != workflows.VisibilityPublic && errors.Is(res.Err, ErrUnavailable) {
				rt.log.Warn("preview visibility query failed; using the last answer", "workflow_id", p.id, "err", res.Err)
				return e.vis, nil
			}
			return "", res.Err
		}
		return res.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// queryVisibility is the one visibility query in flight for p: it caches
// the answer, and a negative answer of the workflow.
func (rt *Router) queryVisibility(p *preview) (any, error) {
	qctx, cancel := context.WithTimeout(rt.ctx, visibilityTimeout)
	defer cancel()
	// A query is Temporal load like a wake: random preview names
	// from many addresses are bounded by the same global cap.
	if !rt.acquireWake() {
		return "", errWakeCap
	}
	defer rt.releaseWake()
	vis, err := rt.visQ.Visibility(qctx, p.id)
	if err != nil {
		if errors.Is(err, ErrUnknownPreview) || errors.Is(err, ErrPreviewGone) {
			p.setNegative(rt.clock()+int64(negativeTTL), err)
		}
		return "", err
	}
	p.vis.Store(&visEntry{vis: vis, until: rt.clock() + rt.visTTL})
	return vis, nil
}

// HostRepo says which repository a preview host (without port) names.
func (m *Mapper) HostRepo(host string) (owner, repo string, ok bool) {
	t, hm := m.parseHost(host)
	return t.Owner, t.Repo, hm == matchOK
}
