package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Login signs user in to the preview of owner/repo#number the way a browser
// does (Options.Login): the preview's login redirect, the auth host, the
// GitHub double's sign-in form, the callback and the ticket. It returns the
// preview host's session cookie. The user must exist on the double
// (h.GH.AddUser, AddCollaborator).
func (h *Harness) Login(ctx context.Context, user, owner, repo string, number int) (*http.Cookie, error) {
	if h.AuthURL == "" {
		return nil, errors.New("harness: login is off (Options.Login)")
	}
	router := strings.TrimPrefix(h.RouterURL, "http://")
	_, port, _ := net.SplitHostPort(router)
	b := newLoginBrowser(ctx, user, router)
	defer b.c.CloseIdleConnections()
	state, authorize, err := b.toGitHub("http://" + PreviewHost(owner, repo, number) + ":" + port + "/")
	if err != nil {
		return nil, err
	}
	resp, err := b.signIn(h.GH.WebURL(), authorize, state)
	if err != nil {
		return nil, err
	}
	for _, ck := range resp.Cookies() {
		if strings.HasSuffix(ck.Name, "drydock_session") {
			return ck, nil
		}
	}
	return nil, fmt.Errorf("login as %s: no session cookie", user)
}

// loginBrowser is Login's browser: every preview host and the auth host
// are the router, and it follows no redirect by itself.
type loginBrowser struct {
	ctx  context.Context
	user string
	c    *http.Client
}

func newLoginBrowser(ctx context.Context, user, router string) *loginBrowser {
	return &loginBrowser{ctx: ctx, user: user, c: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(addr); strings.HasSuffix(host, "."+Domain) {
				addr = router // every preview host and the auth host are the router
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// toGitHub opens the preview at previewURL and follows its redirect to the
// auth host, which redirects to GitHub's authorize page: it returns the
// auth host's state cookie and that page's URL.
func (b *loginBrowser) toGitHub(previewURL string) (state *http.Cookie, authorize *url.URL, err error) {
	resp, err := b.step(http.MethodGet, previewURL, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	if resp, err = b.step(http.MethodGet, resp.Header.Get("Location"), nil, nil); err != nil {
		return nil, nil, err
	}
	for _, ck := range resp.Cookies() {
		state = ck
	}
	authorize, err = url.Parse(resp.Header.Get("Location"))
	if err != nil || state == nil {
		return nil, nil, fmt.Errorf("login as %s: no GitHub redirect or state cookie", b.user)
	}
	return state, authorize, nil
}

// signIn posts the GitHub double's sign-in form (at webURL) for the
// authorize page's request, then follows the callback (with the state
// cookie) and the ticket: it returns the ticket's answer.
func (b *loginBrowser) signIn(webURL string, authorize *url.URL, state *http.Cookie) (*http.Response, error) {
	q := authorize.Query()
	form := url.Values{"login": {b.user}, "client_id": {q.Get("client_id")}, "redirect_uri": {q.Get("redirect_uri")},
		"scope": {q.Get("scope")}, "state": {q.Get("state")}}
	resp, err := b.step(http.MethodPost, webURL+"login/oauth/authorize", form, nil)
	if err != nil {
		return nil, err
	}
	if resp, err = b.step(http.MethodGet, resp.Header.Get("Location"), nil, state); err != nil {
		return nil, err
	}
	return b.step(http.MethodGet, resp.Header.Get("Location"), nil, nil)
}

// step sends one request (form: a POSTed form; cookie: one to send) and
// returns its answer, which must be a redirect (302).
func (b *loginBrowser) step(method, rawURL string, form url.Values, cookie *http.Cookie) (*http.Response, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(b.ctx, method, rawURL, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("login as %s: %s %s: HTTP %d", b.user, method, rawURL, resp.StatusCode)
	}
	return resp, nil
}
