package previewauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows"
)

func TestLoginFlowServesThePreviewAndCachesTheDecision(t *testing.T) {
	e := newEnv(t, nil)
	host := e.host(1, "hello")
	c := e.login("alice", host, "/dashboard?tab=2")
	resp, body := e.get("http://"+host+"/dashboard?tab=2", c, &http.Cookie{Name: "app", Value: "1"})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "app of octo/hello cookies=app=1", body, "the app never sees the session cookie")

	// Warm: no GitHub call per request.
	repoCalls := e.gh.Count(githubtest.RouteGetRepo)
	for range 20 {
		resp, _ = e.get("http://"+host+"/", c)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	assert.Equal(t, repoCalls, e.gh.Count(githubtest.RouteGetRepo), "decision cached")
	// After the cache TTL GitHub is asked again.
	e.advance(DefaultCacheTTL + time.Second)
	resp, _ = e.get("http://"+host+"/", c)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, repoCalls+1, e.gh.Count(githubtest.RouteGetRepo))

	// Set-Cookie attributes: HttpOnly, SameSite=Lax, host-only, not Secure in local http mode.
	callback, state := e.toCallback("alice", host, "/")
	resp, _ = e.get(callback, state)
	resp, _ = e.get(resp.Header.Get("Location"))
	raw := resp.Header.Get("Set-Cookie")
	assert.Contains(t, raw, "HttpOnly")
	assert.Contains(t, raw, "SameSite=Lax")
	assert.NotContains(t, strings.ToLower(raw), "domain=")
	assert.NotContains(t, raw, "Secure")
}

func TestSecureModeCookies(t *testing.T) {
	a, err := New(Config{AuthURL: "https://auth.previews.example.com", ClientID: clientID, ClientSecret: secret,
		SessionKeys: []string{key1}, PreviewHost: previewHost})
	require.NoError(t, err)
	assert.Equal(t, "__Host-drydock_session", a.CookieName())
	w := httptest.NewRecorder()
	a.setCookie(w, a.cookie, "v", 60)
	raw := w.Header().Get("Set-Cookie")
	for _, want := range []string{"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} {
		assert.Contains(t, raw, want)
	}
	assert.NotContains(t, strings.ToLower(raw), "domain=")
}

func TestUserWithoutAccessIsRefusedAtTheCallback(t *testing.T) {
	e := newEnv(t, nil)
	host := e.host(1, "hello")
	callback, state := e.toCallback("bob", host, "/")
	resp, body := e.get(callback, state)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, body, "bob")
	assert.Empty(t, resp.Header.Get("Location"), "no ticket")
	assert.Zero(t, e.served.Load())
}

func TestOrgVisibility(t *testing.T) {
	e := newEnv(t, nil)
	host := e.host(1, "hello")
	// carol is a member of octo without access to the repository.
	e.vis.Store(workflows.VisibilityOrg)
	c := e.login("carol", host, "/")
	resp, _ := e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	// The same session for a private preview: refused.
	e.vis.Store(workflows.VisibilityPrivate)
	resp, body := e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, body)
	// "" (a run from before visibility) is private.
	e.vis.Store("")
	resp, _ = e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	// alice (read access, not a member) may see an org preview too.
	e.vis.Store(workflows.VisibilityOrg)
	c = e.login("alice", host, "/")
	resp, _ = e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestNonBrowserGets401NotARedirect(t *testing.T) {
	e := newEnv(t, nil)
	req, err := http.NewRequest(http.MethodGet, "http://"+e.host(1, "hello")+"/api", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/json")
	resp, _ := e.do(req)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Location"))
	// A browser's POST is not redirected either.
	req, _ = http.NewRequest(http.MethodPost, "http://"+e.host(1, "hello")+"/form", nil)
	req.Header.Set("Accept", "text/html")
	resp, _ = e.do(req)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestSessionCookieIsBoundToItsPreviewHost(t *testing.T) {
	e := newEnv(t, nil)
	e.gh.AddCollaborator("octo", "other", "alice", "read")
	a, b := e.host(1, "hello"), e.host(2, "hello")
	c := e.login("alice", a, "/")
	resp, _ := e.get("http://"+a+"/", c)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// The same cookie on another preview host (warm in the cache, and cold).
	for _, other := range []string{b, e.host(1, "other")} {
		resp, _ = e.get("http://"+other+"/", c)
		assert.Equal(t, http.StatusFound, resp.StatusCode, other)
		assert.Contains(t, resp.Header.Get("Location"), "/login?r=")
	}
	e.a.forget(c.Value)
	resp, _ = e.get("http://"+b+"/", c)
	assert.Equal(t, http.StatusFound, resp.StatusCode, "not cached either")
	assert.Equal(t, int32(1), e.served.Load())
}

func TestTamperedAndExpiredCookies(t *testing.T) {
	e := newEnv(t, nil)
	host := e.host(1, "hello")
	c := e.login("alice", host, "/")
	raw := []byte(c.Value)
	for _, i := range []int{0, len(raw) / 2, len(raw) - 1} {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 1
		if bad[i] == '-' || bad[i] == '_' {
			bad[i] = 'A'
		}
		resp, _ := e.get("http://"+host+"/", &http.Cookie{Name: c.Name, Value: string(bad)})
		assert.Equal(t, http.StatusFound, resp.StatusCode, "tampered at %d", i)
	}
	for _, v := range []string{"", "x", strings.Repeat("A", 5000), "%%%"} {
		resp, _ := e.get("http://"+host+"/", &http.Cookie{Name: c.Name, Value: v})
		assert.Equal(t, http.StatusFound, resp.StatusCode, "garbage %q", v)
	}
	resp, _ := e.get("http://"+host+"/", c)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	e.advance(DefaultSessionTTL + time.Second)
	resp, _ = e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusFound, resp.StatusCode, "expired session")
}

func TestTickets(t *testing.T) {
	e := newEnv(t, nil)
	host, other := e.host(1, "hello"), e.host(2, "hello")
	ticketURL := func() string {
		callback, state := e.toCallback("alice", host, "/")
		resp, _ := e.get(callback, state)
		require.Equal(t, http.StatusFound, resp.StatusCode)
		return resp.Header.Get("Location")
	}

	// Replayed on another preview host: refused.
	u := ticketURL()
	resp, _ := e.get(strings.Replace(u, host, other, 1))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Nil(t, cookieNamed(resp, "drydock_session"))
	// Used once; a second use is refused.
	resp, _ = e.get(u)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	resp, _ = e.get(u)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Nil(t, cookieNamed(resp, "drydock_session"))

	// Expired.
	u = ticketURL()
	e.advance(ticketTTL + time.Second)
	resp, _ = e.get(u)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// A session cookie is not a ticket, and a ticket is not a cookie.
	c := e.login("alice", host, "/")
	resp, _ = e.get("http://" + host + SessionPath + "?ticket=" + c.Value)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	tk, _ := url.Parse(ticketURL())
	resp, _ = e.get("http://"+host+"/", &http.Cookie{Name: c.Name, Value: tk.Query().Get("ticket")})
	assert.Equal(t, http.StatusFound, resp.StatusCode)
}

func TestNoOpenRedirect(t *testing.T) {
	e := newEnv(t, nil)
	repo := Repo{Owner: "octo", Name: "hello"}
	for _, c := range []struct{ host, path string }{
		{"evil.com", "/"},
		{"pr-1--octo--hello.preview.localhost@evil.com", "/"},
		{"pr-1--octo--hello.preview.localhost:80@evil.com", "/"},
		{"pr-1--octo--hello.preview.localhost/evil", "/"},
		{e.host(1, "hello"), "//evil.com"},
		{e.host(1, "hello"), "/\\evil.com"},
		{e.host(1, "hello"), "https://evil.com"},
		{e.host(1, "hello"), "evil.com"},
		{e.host(1, "hello"), "/\r\nLocation: https://evil.com"},
		{"pr-1--octo--hello.preview.localhost:9999", "/"}, // another port of the preview's name
	} {
		_, err := e.a.loginURL(c.host, c.path, repo, "private")
		assert.Error(t, err, "%q %q", c.host, c.path)
	}

	// /login accepts only a return the router sealed, to a preview host of
	// the same repository, with a local path.
	seal := func(ret returnTo) string {
		ret.Exp = e.a.now().Add(time.Minute).Unix()
		s, err := e.a.seal.seal("return", "", ret)
		require.NoError(t, err)
		return s
	}
	loginURL := "http://auth." + testDomain + ":" + e.port + "/login?r="
	for name, r := range map[string]string{
		"unsealed":      url.QueryEscape(`{"h":"evil.com","p":"/"}`),
		"other domain":  seal(returnTo{Host: "evil.com", Path: "/", Owner: "octo", Repo: "hello"}),
		"auth host":     seal(returnTo{Host: "auth." + testDomain, Path: "/", Owner: "octo", Repo: "hello"}),
		"domain suffix": seal(returnTo{Host: "pr-1--octo--hello.preview.localhost.evil.com", Path: "/", Owner: "octo", Repo: "hello"}),
		"userinfo":      seal(returnTo{Host: "pr-1--octo--hello.preview.localhost@evil.com", Path: "/", Owner: "octo", Repo: "hello"}),
		"other repo":    seal(returnTo{Host: e.host(1, "hello"), Path: "/", Owner: "octo", Repo: "other"}),
		"scheme path":   seal(returnTo{Host: e.host(1, "hello"), Path: "//evil.com/x", Owner: "octo", Repo: "hello"}),
		"absolute path": seal(returnTo{Host: e.host(1, "hello"), Path: "https://evil.com", Owner: "octo", Repo: "hello"}),
		"other port":    seal(returnTo{Host: "pr-1--octo--hello.preview.localhost:9999", Path: "/", Owner: "octo", Repo: "hello"}),
	} {
		resp, _ := e.get(loginURL + r)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, name)
		assert.Empty(t, resp.Header.Get("Location"), name)
	}
	// A valid return but expired.
	r := seal(returnTo{Host: e.host(1, "hello"), Path: "/", Owner: "octo", Repo: "hello"})
	e.advance(returnTTL)
	resp, _ := e.get(loginURL + r)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestStateCSRF(t *testing.T) {
	e := newEnv(t, nil)
	host := e.host(1, "hello")
	callback, state := e.toCallback("alice", host, "/")
	for name, cookies := range map[string][]*http.Cookie{
		"no state cookie":    nil,
		"another nonce":      {{Name: state.Name, Value: "AAAAAAAAAAAAAAAAAAAAAA"}},
		"empty state cookie": {{Name: state.Name, Value: ""}},
	} {
		resp, _ := e.get(callback, cookies...)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, name)
	}
	// A state that does not open, or another login's state.
	u, _ := url.Parse(callback)
	q := u.Query()
	q.Set("state", "forged")
	u.RawQuery = q.Encode()
	resp, _ := e.get(u.String(), state)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Zero(t, e.gh.Count(githubtest.RouteOAuthAccessToken), "no code exchanged for a refused callback")
	// The genuine callback still works once.
	resp, _ = e.get(callback, state)
	assert.Equal(t, http.StatusFound, resp.StatusCode)
	resp, _ = e.get(callback, state)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "the code is single-use at GitHub")
}

func TestGitHubErrorsMeanNoAccess(t *testing.T) {
	e := newEnv(t, nil)
	host := e.host(1, "hello")
	c := e.login("alice", host, "/")
	e.advance(DefaultCacheTTL + time.Second) // the decision must be asked again

	e.gh.FailNext(githubtest.RouteGetRepo, 1, githubtest.BadGateway())
	resp, _ := e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	e.gh.FailNext(githubtest.RouteGetRepo, 1, githubtest.SecondaryRateLimit(time.Minute))
	resp, _ = e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a rate limit is not a denial")
	assert.Zero(t, e.served.Load())
	// Not cached: the next request is served.
	resp, _ = e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// GitHub gone entirely: no access, no crash, on the callback and on a request.
	e.advance(DefaultCacheTTL + time.Second)
	e.gh.Close()
	resp, _ = e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, int32(1), e.served.Load())
}

func TestRevokedTokenMeansLoginAgain(t *testing.T) {
	e := newEnv(t, nil)
	host := e.host(1, "hello")
	c := e.login("alice", host, "/")
	e.advance(DefaultCacheTTL + time.Second)
	e.gh.FailNext(githubtest.RouteGetRepo, 1, githubtest.Error(http.StatusUnauthorized, "Bad credentials"))
	resp, _ := e.get("http://"+host+"/", c)
	assert.Equal(t, http.StatusFound, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Location"), "/login?r=")
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t, nil)
	host := e.host(1, "hello")
	c := e.login("alice", host, "/")
	// A router with a new key and the old one as previous still opens it.
	rotated, err := New(Config{AuthURL: e.a.cfg.AuthURL, ClientID: clientID, ClientSecret: secret,
		SessionKeys: []string{key2, key1}, PreviewHost: previewHost})
	require.NoError(t, err)
	assert.NotNil(t, rotated.sessionOf(c.Value, bindHost(host)))
	// Without the old key it does not.
	fresh, err := New(Config{AuthURL: e.a.cfg.AuthURL, ClientID: clientID, ClientSecret: secret,
		SessionKeys: []string{key2}, PreviewHost: previewHost})
	require.NoError(t, err)
	assert.Nil(t, fresh.sessionOf(c.Value, bindHost(host)))
}

func TestConfigValidation(t *testing.T) {
	good := Config{AuthURL: "https://auth.previews.example.com", ClientID: clientID, ClientSecret: secret,
		SessionKeys: []string{key1}, PreviewHost: previewHost}
	_, err := New(good)
	require.NoError(t, err)
	for name, mod := range map[string]func(*Config){
		"short key":          func(c *Config) { c.SessionKeys = []string{"short"} },
		"short previous key": func(c *Config) { c.SessionKeys = []string{key1, "short"} },
		"no key":             func(c *Config) { c.SessionKeys = nil },
		"no secret":          func(c *Config) { c.ClientSecret = "" },
		"http public host":   func(c *Config) { c.AuthURL = "http://auth.previews.example.com" },
		"path":               func(c *Config) { c.AuthURL = "https://auth.previews.example.com/x" },
		"preview host":       func(c *Config) { c.AuthURL = "https://pr-1--octo--hello." + testDomain },
		"bad GitHub URL":     func(c *Config) { c.GitHubURL = "github.com" },
	} {
		c := good
		mod(&c)
		_, err := New(c)
		assert.Error(t, err, name)
	}
}

func TestStripCookie(t *testing.T) {
	a := &Auth{cookie: "drydock_session"}
	h := http.Header{"Cookie": {"a=1; drydock_session=xyz; b=2", "drydock_session=q"}}
	a.StripCookie(h)
	assert.Equal(t, []string{"a=1; b=2"}, h["Cookie"])
	h = http.Header{"Cookie": {"drydock_session=xyz"}}
	a.StripCookie(h)
	assert.Empty(t, h["Cookie"])
	h = http.Header{"Cookie": {"drydock_session_other=1"}}
	a.StripCookie(h)
	assert.Equal(t, []string{"drydock_session_other=1"}, h["Cookie"])
}
