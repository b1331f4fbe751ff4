package githubtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize signs login in on the consent form and returns the code.
func authorize(t *testing.T, s *Server, login, redirect string) (int, string) {
	t.Helper()
	form := url.Values{"login": {login}, "client_id": {"cid"}, "redirect_uri": {redirect}, "state": {"st"}}
	resp, err := noRedirect.PostForm(s.WebURL()+"login/oauth/authorize", form)
	require.NoError(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, ""
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	assert.Equal(t, "st", u.Query().Get("state"))
	return resp.StatusCode, u.Query().Get("code")
}

func exchange(t *testing.T, s *Server, code, secret, redirect string) map[string]string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.WebURL()+"login/oauth/access_token",
		strings.NewReader(url.Values{"client_id": {"cid"}, "client_secret": {secret}, "code": {code}, "redirect_uri": {redirect}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

func getWith(t *testing.T, s *Server, token, path string) int {
	req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestOAuthFlowAndPermissions(t *testing.T) {
	s := New(t)
	const cb = "http://auth.example/callback"
	s.AddOAuthApp("cid", "csecret", cb)
	s.AddCollaborator("octo", "private-repo", "alice", "read")
	s.AddUser("bob")
	s.AddOrgMember("octo", "bob")

	// The consent page is HTML with a form; an unknown client or callback is refused.
	resp, err := http.Get(s.WebURL() + "login/oauth/authorize?client_id=cid&redirect_uri=" + url.QueryEscape(cb) + "&state=st")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	code, _ := authorize(t, s, "alice", "https://evil.example/callback")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = authorize(t, s, "mallory", cb)
	assert.Equal(t, http.StatusUnauthorized, code, "unknown user")

	_, c := authorize(t, s, "alice", cb)
	assert.Equal(t, "incorrect_client_credentials", exchange(t, s, c, "wrong", cb)["error"])
	_, c = authorize(t, s, "alice", cb)
	assert.Equal(t, "redirect_uri_mismatch", exchange(t, s, c, "csecret", cb+"/other")["error"])
	_, c = authorize(t, s, "alice", cb)
	out := exchange(t, s, c, "csecret", cb)
	alice := out["access_token"]
	require.NotEmpty(t, alice)
	assert.Equal(t, "bad_verification_code", exchange(t, s, c, "csecret", cb)["error"], "codes are single-use")

	_, c = authorize(t, s, "bob", cb)
	bob := exchange(t, s, c, "csecret", cb)["access_token"]

	assert.Equal(t, http.StatusOK, getWith(t, s, alice, "user"))
	assert.Equal(t, http.StatusOK, getWith(t, s, alice, "repos/octo/private-repo"))
	assert.Equal(t, http.StatusNotFound, getWith(t, s, bob, "repos/octo/private-repo"), "no read access: 404 as GitHub")
	assert.Equal(t, http.StatusOK, getWith(t, s, bob, "user/memberships/orgs/octo"))
	assert.Equal(t, http.StatusNotFound, getWith(t, s, alice, "user/memberships/orgs/octo"))
	assert.Equal(t, http.StatusNoContent, getWith(t, s, alice, "orgs/octo/members/bob"))
	assert.Equal(t, http.StatusNotFound, getWith(t, s, alice, "orgs/octo/members/alice"))
	s.SetRepoPublic("octo", "private-repo", true)
	assert.Equal(t, http.StatusOK, getWith(t, s, bob, "repos/octo/private-repo"), "a public repository is readable")

	// AddToken's tokens keep seeing every repository.
	s.AddToken("ghp_x", "drydock-bot")
	assert.Equal(t, http.StatusOK, getWith(t, s, "ghp_x", "repos/octo/private-repo"))
	assert.Equal(t, 2, s.OAuthTokens())
}
