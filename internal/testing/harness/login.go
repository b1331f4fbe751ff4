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
	c := &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(addr); strings.HasSuffix(host, "."+Domain) {
				addr = router // every preview host and the auth host are the router
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer c.CloseIdleConnections()
	step := func(method, rawURL string, form url.Values, cookie *http.Cookie) (*http.Response, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
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
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return nil, fmt.Errorf("login as %s: %s %s: HTTP %d", user, method, rawURL, resp.StatusCode)
		}
		return resp, nil
	}
	resp, err := step(http.MethodGet, "http://"+PreviewHost(owner, repo, number)+":"+port+"/", nil, nil)
	if err != nil {
		return nil, err
	}
	if resp, err = step(http.MethodGet, resp.Header.Get("Location"), nil, nil); err != nil {
		return nil, err
	}
	var state *http.Cookie
	for _, ck := range resp.Cookies() {
		state = ck
	}
	authorize, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || state == nil {
		return nil, fmt.Errorf("login as %s: no GitHub redirect or state cookie", user)
	}
	q := authorize.Query()
	form := url.Values{"login": {user}, "client_id": {q.Get("client_id")}, "redirect_uri": {q.Get("redirect_uri")},
		"scope": {q.Get("scope")}, "state": {q.Get("state")}}
	if resp, err = step(http.MethodPost, h.GH.WebURL()+"login/oauth/authorize", form, nil); err != nil {
		return nil, err
	}
	if resp, err = step(http.MethodGet, resp.Header.Get("Location"), nil, state); err != nil {
		return nil, err
	}
	if resp, err = step(http.MethodGet, resp.Header.Get("Location"), nil, nil); err != nil {
		return nil, err
	}
	for _, ck := range resp.Cookies() {
		if strings.HasSuffix(ck.Name, "drydock_session") {
			return ck, nil
		}
	}
	return nil, fmt.Errorf("login as %s: no session cookie", user)
}
