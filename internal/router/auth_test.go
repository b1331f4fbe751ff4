package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/previewauth"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows"
)

// authStack is a router with login against a GitHub double, in front of
// an app, with a fake waker counting wakes and touches.
type authStack struct {
	t      *testing.T
	rt     *Router
	srv    *httptest.Server
	fw     *fakeWaker
	gh     *githubtest.Server
	port   string
	client *http.Client
}

func newAuthStack(t *testing.T, vis string, mod func(*Options)) *authStack {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sc := r.URL.Query().Get("setcookie"); sc != "" {
			w.Header().Add("Set-Cookie", sc+"=planted; Path=/")
			w.Header().Add("Set-Cookie", "app=1; Path=/")
		}
		if cc := r.URL.Query().Get("cache"); cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		_, _ = io.WriteString(w, "app cookies="+r.Header.Get("Cookie"))
	}))
	t.Cleanup(app.Close)
	s := &authStack{t: t, fw: &fakeWaker{url: app.URL, vis: vis}, gh: githubtest.New(t)}
	// The router's port is in the auth URL: listen first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, s.port, _ = net.SplitHostPort(ln.Addr().String())
	mapper, err := NewMapper("preview.localhost", "")
	require.NoError(t, err)
	auth, err := previewauth.New(previewauth.Config{
		AuthURL: "http://auth.preview.localhost:" + s.port, ClientID: "cid", ClientSecret: "csecret",
		SessionKeys: []string{strings.Repeat("k", 40)}, GitHubURL: s.gh.WebURL(), APIURL: s.gh.URL(),
		PreviewHost: func(host string) (previewauth.Repo, bool) {
			t, m := mapper.parseHost(host)
			return previewauth.Repo{Owner: t.Owner, Name: t.Repo}, m == matchOK
		},
	})
	require.NoError(t, err)
	s.gh.AddOAuthApp("cid", "csecret", auth.CallbackURL())
	s.gh.AddCollaborator("octo", "hello", "alice", "read")
	s.gh.AddOrgMember("octo", "bob")
	opts := Options{Domain: "preview.localhost", Waker: s.fw, Logger: testLogger(), Auth: auth, TouchEvery: time.Millisecond}
	if mod != nil {
		mod(&opts)
	}
	s.rt, err = New(opts)
	require.NoError(t, err)
	s.srv = httptest.NewUnstartedServer(s.rt)
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.Start()
	t.Cleanup(func() { s.srv.Close(); s.rt.Close() })
	routerAddr := ln.Addr().String()
	s.client = &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !strings.HasPrefix(addr, "127.0.0.1:") {
				addr = routerAddr // every *.preview.localhost name is the router
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

func (s *authStack) host(n int) string {
	return fmt.Sprintf("pr-%d--octo--hello.preview.localhost:%s", n, s.port)
}

func (s *authStack) do(method, rawURL, accept string, c *http.Cookie) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	require.NoError(s.t, err)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c != nil {
		req.AddCookie(c)
	}
	resp, err := s.client.Do(req)
	require.NoError(s.t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Header.Set("X-Test-Body", strings.ReplaceAll(string(b), "\n", " "))
	return resp
}

const html = "text/html,application/xhtml+xml"

// login drives the browser flow for user on host and returns the session
// cookie ("" when the callback refused the user).
func (s *authStack) login(user, host string) *http.Cookie {
	s.t.Helper()
	resp := s.do(http.MethodGet, "http://"+host+"/", html, nil)
	require.Equal(s.t, http.StatusFound, resp.StatusCode, resp.Header.Get("X-Test-Body"))
	resp = s.do(http.MethodGet, resp.Header.Get("Location"), html, nil)
	require.Equal(s.t, http.StatusFound, resp.StatusCode)
	state := resp.Cookies()[0]
	authorize, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(s.t, err)
	q := authorize.Query()
	form := url.Values{"login": {user}, "client_id": {q.Get("client_id")}, "redirect_uri": {q.Get("redirect_uri")}, "state": {q.Get("state")}}
	req, _ := http.NewRequest(http.MethodPost, s.gh.WebURL()+"login/oauth/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	gresp, err := s.client.Do(req)
	require.NoError(s.t, err)
	gresp.Body.Close()
	require.Equal(s.t, http.StatusFound, gresp.StatusCode)
	resp = s.do(http.MethodGet, gresp.Header.Get("Location"), html, state)
	if resp.StatusCode != http.StatusFound {
		return nil
	}
	resp = s.do(http.MethodGet, resp.Header.Get("Location"), html, nil)
	require.Equal(s.t, http.StatusFound, resp.StatusCode)
	for _, c := range resp.Cookies() {
		if c.Name == "drydock_session" {
			return c
		}
	}
	s.t.Fatal("no session cookie")
	return nil
}

// settle lets queued touches run, then reports wakes and touches.
func (s *authStack) counts() (wakes, touches int32) {
	time.Sleep(50 * time.Millisecond)
	return s.fw.wakes.Load(), s.fw.touches.Load()
}

func TestUnauthenticatedRequestsNeverWakeNorTouch(t *testing.T) {
	s := newAuthStack(t, workflows.VisibilityPrivate, nil)
	host := s.host(7)
	other := s.login("alice", s.host(8)) // a valid session of another preview
	forged := &http.Cookie{Name: "drydock_session", Value: strings.Repeat("A", 120)}
	for name, c := range map[string]struct {
		method, accept string
		cookie         *http.Cookie
		want           int
	}{
		"browser without session":       {http.MethodGet, html, nil, http.StatusFound},
		"API client without session":    {http.MethodGet, "application/json", nil, http.StatusUnauthorized},
		"curl":                          {http.MethodGet, "", nil, http.StatusUnauthorized},
		"POST without session":          {http.MethodPost, html, nil, http.StatusUnauthorized},
		"forged cookie":                 {http.MethodGet, html, forged, http.StatusFound},
		"another preview's cookie":      {http.MethodGet, html, other, http.StatusFound},
		"another preview's cookie, API": {http.MethodGet, "*/*", other, http.StatusUnauthorized},
	} {
		for range 5 {
			resp := s.do(c.method, "http://"+host+"/", c.accept, c.cookie)
			assert.Equal(t, c.want, resp.StatusCode, name)
		}
	}
	// The header form cannot carry a session: refused.
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/", nil)
	req.Header.Set(HeaderRepo, "octo/hello")
	req.Header.Set(HeaderPR, "7")
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	wakes, touches := s.counts()
	assert.Zero(t, wakes, "no wake for an unauthenticated request")
	assert.Zero(t, touches, "no touch: not activity")
	assert.EqualValues(t, 2, s.fw.visQueries.Load(), "one visibility query per preview, cached")

	// The logged-in user with access: served, one wake; warm requests
	// neither wake again nor ask GitHub.
	c := s.login("alice", host)
	repoCalls := s.gh.Count(githubtest.RouteGetRepo)
	for range 20 {
		resp := s.do(http.MethodGet, "http://"+host+"/x", html, c)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "app cookies=", resp.Header.Get("X-Test-Body"), "the app does not see the session cookie")
	}
	wakes, touches = s.counts()
	assert.EqualValues(t, 1, wakes)
	assert.Positive(t, touches)
	assert.Equal(t, repoCalls, s.gh.Count(githubtest.RouteGetRepo))
}

func TestLoggedInUserWithoutAccessIs403AndWakesNothing(t *testing.T) {
	vttl := 20 * time.Millisecond
	s := newAuthStack(t, workflows.VisibilityOrg, func(o *Options) { o.VisibilityTTL = vttl })
	host := s.host(9)
	c := s.login("bob", host) // an org member: org preview allowed
	resp := s.do(http.MethodGet, "http://"+host+"/", html, c)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	wakes, _ := s.counts()
	require.EqualValues(t, 1, wakes)
	touchesBefore := s.fw.touches.Load()

	// The preview becomes private: bob has no read access.
	s.fw.set(func(f *fakeWaker) { f.vis = workflows.VisibilityPrivate })
	time.Sleep(2 * vttl)
	s.rt.lookup(Target{"octo", "hello", 9}, s.rt.clock()).markCold()
	for range 5 {
		resp = s.do(http.MethodGet, "http://"+host+"/", html, c)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Contains(t, resp.Header.Get("X-Test-Body"), "bob")
	}
	wakes, touches := s.counts()
	assert.EqualValues(t, 1, wakes, "no wake for a user without access")
	assert.Equal(t, touchesBefore, touches, "no touch for a user without access")
	// alice cannot get bob's access, nor bob a ticket at the callback.
	assert.Nil(t, s.login("bob", s.host(10)))
}

func TestNonPublicWithoutLoginIsRefused(t *testing.T) {
	for _, vis := range []string{workflows.VisibilityPrivate, workflows.VisibilityOrg, "", "something-new"} {
		fw := &fakeWaker{url: "http://127.0.0.1:1"}
		q := visibilityFunc(func(context.Context, string) (string, error) { return vis, nil })
		reg := metrics.New("router-test")
		_, srv := newRouter(t, fw, func(o *Options) { o.Visibility, o.Metrics = q, metrics.NewRouter(reg) })
		resp, body := do(t, http.MethodGet, srv.URL+"/", "pr-1.preview.localhost", nil, map[string]string{"Accept": html})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "visibility %q", vis)
		assert.Contains(t, body, "login is not configured on this router")
		assert.Contains(t, scrape(t, reg), `drydock_router_requests_total{path="login"} 1`)
		time.Sleep(20 * time.Millisecond)
		assert.Zero(t, fw.wakes.Load())
		assert.Zero(t, fw.touches.Load())
	}
}

type visibilityFunc func(context.Context, string) (string, error)

func (f visibilityFunc) Visibility(ctx context.Context, id string) (string, error) { return f(ctx, id) }

func TestVisibilityErrors(t *testing.T) {
	fw := &fakeWaker{url: "http://127.0.0.1:1", visErr: fmt.Errorf("query: %w", ErrUnknownPreview)}
	_, srv := newRouter(t, fw, nil)
	for range 3 {
		resp, _ := do(t, http.MethodGet, srv.URL+"/", "pr-1.preview.localhost", nil, nil)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	}
	assert.Zero(t, fw.wakes.Load(), "an unknown preview is not woken")
	assert.EqualValues(t, 1, fw.visQueries.Load(), "the answer is cached")

	fw = &fakeWaker{url: "http://127.0.0.1:1", visErr: fmt.Errorf("query: %w", ErrUnavailable)}
	_, srv = newRouter(t, fw, nil)
	resp, _ := do(t, http.MethodGet, srv.URL+"/", "pr-1.preview.localhost", nil, nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Zero(t, fw.wakes.Load())

	// A router whose waker cannot answer visibility is not built.
	_, err := New(Options{Domain: "preview.localhost", Waker: noVisWaker{}})
	assert.ErrorContains(t, err, "VisibilityQuerier")
}

type noVisWaker struct{}

func (noVisWaker) Wake(context.Context, string) (workflows.WakeResult, error) {
	return workflows.WakeResult{}, nil
}
func (noVisWaker) Touch(context.Context, string) error { return nil }

func TestPublicPreviewUnchangedWithLoginOn(t *testing.T) {
	s := newAuthStack(t, workflows.VisibilityPublic, nil)
	host := s.host(3)
	for _, path := range []string{"/", previewauth.SessionPath + "?ticket=x"} {
		resp := s.do(http.MethodGet, "http://"+host+path, "application/json", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
	wakes, touches := s.counts()
	assert.EqualValues(t, 1, wakes)
	assert.Positive(t, touches)
	// The auth host is served by the router.
	resp := s.do(http.MethodGet, "http://auth.preview.localhost:"+s.port+"/login?r=forged", html, nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// Through Temporal: the visibility comes from the status query, which
// sends no wake Update and no touch.
func TestVisibilityThroughTemporal(t *testing.T) {
	queue := startFakeWorker(t)
	c := devServer.Client()
	ctx := context.Background()
	tgt := Target{"octo", "hello", nextPR()}
	startFakePreview(t, queue, tgt, "http://127.0.0.1:1/app")
	t.Cleanup(func() { _ = c.TerminateWorkflow(ctx, tgt.WorkflowID(), "", "test done") })
	require.NoError(t, c.SignalWorkflow(ctx, tgt.WorkflowID(), "", signalVisibility, workflows.VisibilityPrivate))

	_, srv := newRouter(t, NewTemporalWaker(c), func(o *Options) { o.TouchEvery = time.Millisecond })
	host := fmt.Sprintf("pr-%d--octo--hello.preview.localhost", tgt.Number)
	for range 3 {
		resp, body := do(t, http.MethodGet, srv.URL+"/", host, nil, map[string]string{"Accept": html})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Contains(t, body, "login is not configured")
	}
	time.Sleep(100 * time.Millisecond)
	st := queryFake(ctx, t, tgt.WorkflowID())
	assert.Zero(t, st.Updates, "no wake Update")
	assert.Zero(t, st.Touches, "no touch")

	// An unknown preview: 404 from the query, no wake.
	resp, _ := do(t, http.MethodGet, srv.URL+"/", fmt.Sprintf("pr-%d--octo--nosuch.preview.localhost", tgt.Number), nil, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// A shared cache in front of the router (a CDN) must never keep a page of a
// non-public preview and hand it to someone who did not sign in: such
// answers are marked private whatever the app says. Public previews keep
// the app's caching.
func TestNonPublicAnswersAreNeverSharedCacheable(t *testing.T) {
	s := newAuthStack(t, workflows.VisibilityPrivate, nil)
	host := s.host(21)
	c := s.login("alice", host)
	for app, want := range map[string]string{
		"":                                     "private",
		"public, max-age=600, s-maxage=3600":   "max-age=600, private",
		"max-age=60,PUBLIC":                    "max-age=60, private",
		"no-store":                             "no-store, private",
		"private, max-age=5":                   "private, max-age=5",
		`public, no-cache="Set-Cookie"`:        `no-cache="Set-Cookie", private`,
		"s-maxage=9, stale-while-revalidate=1": "stale-while-revalidate=1, private",
	} {
		resp := s.do(http.MethodGet, "http://"+host+"/?cache="+url.QueryEscape(app), html, c)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, want, resp.Header.Get("Cache-Control"), "app sent %q", app)
		assert.Contains(t, resp.Header.Values("Vary"), "Cookie")
	}

	pub := newAuthStack(t, workflows.VisibilityPublic, nil)
	resp := pub.do(http.MethodGet, "http://"+pub.host(22)+"/?cache="+url.QueryEscape("public, s-maxage=60"), html, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "public, s-maxage=60", resp.Header.Get("Cache-Control"), "a public preview keeps the app's caching")
}

// Every preview host is the same site for the browser, so the session
// cookie goes along with another preview's fetch, form post or WebSocket:
// a non-public preview refuses requests from another origin (nothing
// woken, not activity) and keeps answering its own pages and top-level
// navigations.
func TestCrossSiteRequestsToNonPublicPreviewsAreRefused(t *testing.T) {
	s := newAuthStack(t, workflows.VisibilityPrivate, nil)
	host := s.host(23)
	c := s.login("alice", host)
	other := "http://" + s.host(24)
	doH := func(h map[string]string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, "http://"+host+"/data", nil)
		require.NoError(t, err)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		req.AddCookie(c)
		resp, err := s.client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	wakes, _ := s.counts()
	touches := s.fw.touches.Load()
	for name, h := range map[string]map[string]string{
		"another preview's fetch":     {"Origin": other},
		"another preview's websocket": {"Origin": other, "Connection": "Upgrade", "Upgrade": "websocket"},
		"sandboxed (null) origin":     {"Origin": "null"},
		"no-cors subresource":         {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"},
		"cross-site cors":             {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
	} {
		assert.Equal(t, http.StatusForbidden, doH(h).StatusCode, name)
	}
	w2, _ := s.counts()
	assert.Equal(t, wakes, w2, "refused requests wake nothing")
	assert.Equal(t, touches, s.fw.touches.Load(), "refused requests are not activity")
	for name, h := range map[string]map[string]string{
		"its own page's fetch":            {"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},
		"a link from another site":        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},
		"a client without fetch metadata": {},
	} {
		assert.Equal(t, http.StatusOK, doH(h).StatusCode, name)
	}

	// A public preview is anyone's: other origins are its own business.
	pub := newAuthStack(t, workflows.VisibilityPublic, nil)
	req, err := http.NewRequest(http.MethodGet, "http://"+pub.host(25)+"/", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", other)
	resp, err := pub.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// A preview cannot replace the router's own cookies (the session, the
// login state); its other cookies pass.
func TestPreviewCannotSetTheRoutersCookies(t *testing.T) {
	s := newAuthStack(t, workflows.VisibilityPrivate, nil)
	host := s.host(26)
	c := s.login("alice", host)
	for _, name := range []string{"drydock_session", "drydock_login"} {
		resp := s.do(http.MethodGet, "http://"+host+"/?setcookie="+name, html, c)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		got := resp.Header.Values("Set-Cookie")
		assert.Equal(t, []string{"app=1; Path=/"}, got, name)
	}
}

// The auth host is the router's own: the header form cannot make it serve
// a preview under the auth origin.
func TestAuthHostNeverServesAPreview(t *testing.T) {
	s := newAuthStack(t, workflows.VisibilityPublic, nil)
	req, err := http.NewRequest(http.MethodGet, "http://auth.preview.localhost:"+s.port+"/", nil)
	require.NoError(t, err)
	req.Header.Set(HeaderRepo, "octo/hello")
	req.Header.Set(HeaderPR, "27")
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.NotContains(t, string(b), "app cookies", "a preview served under the auth origin")
	assert.NotEqual(t, http.StatusOK, resp.StatusCode)
	wakes, _ := s.counts()
	assert.Zero(t, wakes)
}

// Visibility queries are Temporal calls like wakes: past the global cap
// (here 1, held by a query that hangs) a request for another preview is
// refused with 429 and sends nothing to Temporal.
func TestVisibilityQueriesShareTheGlobalCap(t *testing.T) {
	release := make(chan struct{})
	var queries atomic.Int32
	vq := visibilityFunc(func(ctx context.Context, id string) (string, error) {
		queries.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return workflows.VisibilityPublic, nil
	})
	fw := &fakeWaker{url: "http://127.0.0.1:1"}
	_, srv := newRouter(t, fw, func(o *Options) { o.Visibility = vq; o.MaxConcurrentWakes = 1 })
	defer close(release)
	first := make(chan struct{})
	go func() {
		defer close(first)
		_, _ = do(t, http.MethodGet, srv.URL+"/", "pr-1.preview.localhost", nil, nil)
	}()
	require.Eventually(t, func() bool { return queries.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	resp, _ := do(t, http.MethodGet, srv.URL+"/", "pr-2.preview.localhost", nil, nil)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.EqualValues(t, 1, queries.Load(), "the refused request asked Temporal nothing")
	assert.Zero(t, fw.wakes.Load())
}

// While Temporal is unavailable a cached answer is reused only if it is not
// public: a preview made private must not stay open meanwhile.
func TestStalePublicAnswerIsNotReused(t *testing.T) {
	fw := &fakeWaker{url: "http://127.0.0.1:1", vis: workflows.VisibilityPublic}
	rt, srv := newRouter(t, fw, func(o *Options) { o.VisibilityTTL = 10 * time.Millisecond })
	p := rt.lookup(Target{Owner: "octo", Repo: "hello", Number: 1}, rt.clock())
	vis, err := rt.visibilityOf(context.Background(), p, rt.clock())
	require.NoError(t, err)
	require.Equal(t, workflows.VisibilityPublic, vis)
	fw.set(func(f *fakeWaker) { f.visErr = fmt.Errorf("query: %w", ErrUnavailable) })
	time.Sleep(20 * time.Millisecond)
	_, err = rt.visibilityOf(context.Background(), p, rt.clock())
	assert.ErrorIs(t, err, ErrUnavailable, "a stale public answer was reused")
	_ = srv

	fw = &fakeWaker{url: "http://127.0.0.1:1", vis: workflows.VisibilityPrivate}
	rt, _ = newRouter(t, fw, func(o *Options) { o.VisibilityTTL = 10 * time.Millisecond })
	p = rt.lookup(Target{Owner: "octo", Repo: "hello", Number: 1}, rt.clock())
	_, err = rt.visibilityOf(context.Background(), p, rt.clock())
	require.NoError(t, err)
	fw.set(func(f *fakeWaker) { f.visErr = fmt.Errorf("query: %w", ErrUnavailable) })
	time.Sleep(20 * time.Millisecond)
	vis, err = rt.visibilityOf(context.Background(), p, rt.clock())
	require.NoError(t, err, "a stale private answer keeps the login in front")
	assert.Equal(t, workflows.VisibilityPrivate, vis)
}
