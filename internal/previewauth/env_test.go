package previewauth

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows"
)

// The test environment of the login flow: a router stand-in, a GitHub
// double, and a browser that follows the flow.

const (
	testDomain = "preview.localhost"
	clientID   = "Iv1.test-client"
	secret     = "test-client-secret"
	key1       = "0123456789abcdef0123456789abcdef-key-one"
	key2       = "0123456789abcdef0123456789abcdef-key-two"
)

// previewHost parses pr-<n>--<owner>--<repo>.preview.localhost, as the router's mapper does.
func previewHost(host string) (Repo, bool) {
	label, ok := strings.CutSuffix(host, "."+testDomain)
	if !ok || !strings.HasPrefix(label, "pr-") || strings.Contains(label, ".") {
		return Repo{}, false
	}
	parts := strings.Split(label, "--")
	if len(parts) != 3 {
		return Repo{}, false
	}
	return Repo{Owner: parts[1], Name: parts[2]}, true
}

// env is a router stand-in serving the auth host and preview hosts with
// Auth in front of an app, and a GitHub double.
type env struct {
	t      *testing.T
	gh     *githubtest.Server
	a      *Auth
	srv    *httptest.Server
	port   string
	client *http.Client
	vis    atomic.Value // visibility of every preview
	served atomic.Int32 // requests that reached the app
	clock  atomic.Int64 // unix nanoseconds
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, gh: githubtest.New(t)}
	e.vis.Store(workflows.VisibilityPrivate)
	e.clock.Store(time.Now().UnixNano())
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	_, e.port, _ = net.SplitHostPort(e.srv.Listener.Addr().String())
	cfg := Config{
		AuthURL: "http://auth." + testDomain + ":" + e.port, ClientID: clientID, ClientSecret: secret,
		SessionKeys: []string{key1}, GitHubURL: e.gh.WebURL(), APIURL: e.gh.URL(), PreviewHost: previewHost,
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	require.NoError(t, err)
	a.now = func() time.Time { return time.Unix(0, e.clock.Load()) }
	e.a = a
	e.gh.AddOAuthApp(clientID, secret, a.CallbackURL())
	e.gh.AddRepo("octo", "hello")
	e.gh.AddRepo("octo", "other")
	e.gh.AddCollaborator("octo", "hello", "alice", "read")
	e.gh.AddUser("bob")
	e.gh.AddOrgMember("octo", "carol")
	// Every name resolves to the test server; no redirect is followed.
	addr := e.srv.Listener.Addr().String()
	e.client = &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return e
}

func (e *env) advance(d time.Duration) { e.clock.Add(int64(d)) }

func (e *env) serve(w http.ResponseWriter, r *http.Request) {
	if e.a.IsAuthHost(r.Host) {
		e.a.ServeHTTP(w, r)
		return
	}
	name, _, _ := strings.Cut(r.Host, ":")
	repo, ok := previewHost(name)
	if !ok {
		// The GitHub double's web pages, reached under its own host name.
		http.Error(w, "not a preview host", http.StatusNotFound)
		return
	}
	if r.URL.Path == SessionPath || r.URL.Path == LogoutPath {
		e.a.ServeSession(w, r)
		return
	}
	vis := e.vis.Load().(string)
	v, login := e.a.Check(r, repo, vis)
	if v != Allowed {
		e.a.Refuse(w, r, v, login, repo, vis)
		return
	}
	e.a.StripCookie(r.Header)
	e.served.Add(1)
	_, _ = io.WriteString(w, "app of "+repo.String()+" cookies="+r.Header.Get("Cookie"))
}

func (e *env) host(n int, repo string) string {
	return "pr-" + strconv.Itoa(n) + "--octo--" + repo + "." + testDomain + ":" + e.port
}

// get sends GET url with the cookies given and a browser's Accept.
func (e *env) get(rawURL string, cookies ...*http.Cookie) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	require.NoError(e.t, err)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) (*http.Response, string) {
	e.t.Helper()
	resp, err := e.client.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp, string(b)
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// toCallback runs the flow up to the callback URL GitHub redirects to,
// with the auth host's state cookie.
func (e *env) toCallback(user, host, path string) (callback string, state *http.Cookie) {
	e.t.Helper()
	resp, _ := e.get("http://" + host + path)
	require.Equal(e.t, http.StatusFound, resp.StatusCode, "login redirect")
	login := resp.Header.Get("Location")
	require.True(e.t, strings.HasPrefix(login, "http://auth."+testDomain+":"+e.port+"/login?r="), login)

	resp, _ = e.get(login)
	require.Equal(e.t, http.StatusFound, resp.StatusCode)
	state = cookieNamed(resp, "drydock_login")
	require.NotNil(e.t, state)
	authorize, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(e.t, err)
	require.Equal(e.t, "/login/oauth/authorize", authorize.Path)
	q := authorize.Query()
	assert.Equal(e.t, clientID, q.Get("client_id"))
	assert.Equal(e.t, e.a.CallbackURL(), q.Get("redirect_uri"))

	// The user signs in on the double's page and authorizes.
	form := url.Values{"login": {user}, "client_id": {q.Get("client_id")}, "redirect_uri": {q.Get("redirect_uri")},
		"scope": {q.Get("scope")}, "state": {q.Get("state")}}
	req, err := http.NewRequest(http.MethodPost, strings.TrimSuffix(e.gh.WebURL(), "/")+"/login/oauth/authorize", strings.NewReader(form.Encode()))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = ghClient.Do(req)
	require.NoError(e.t, err)
	resp.Body.Close()
	require.Equal(e.t, http.StatusFound, resp.StatusCode)
	return resp.Header.Get("Location"), state
}

// ghClient is the browser on the GitHub double's page: it follows no redirect.
var ghClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// login runs the whole flow and returns the preview host's session cookie.
func (e *env) login(user, host, path string) *http.Cookie {
	e.t.Helper()
	callback, state := e.toCallback(user, host, path)
	resp, body := e.get(callback, state)
	require.Equal(e.t, http.StatusFound, resp.StatusCode, body)
	ticketURL := resp.Header.Get("Location")
	require.True(e.t, strings.HasPrefix(ticketURL, "http://"+host+SessionPath+"?ticket="), ticketURL)
	resp, _ = e.get(ticketURL)
	require.Equal(e.t, http.StatusFound, resp.StatusCode)
	assert.Equal(e.t, path, resp.Header.Get("Location"))
	c := cookieNamed(resp, "drydock_session")
	require.NotNil(e.t, c)
	return c
}
