package githubtest_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

const tok = "ghp_test"

// do sends a request with "token" auth (unless header is given) and decodes
// the JSON answer into out (if not nil).
func do(t *testing.T, method, url, auth, body string, out any) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out), string(b))
	}
	return resp
}

func newServer(t *testing.T) *githubtest.Server {
	srv := githubtest.New(t)
	srv.AddRepo("octo", "hello")
	srv.AddToken(tok, "alice")
	return srv
}

func TestGitHubDoubleAuthAndRouting(t *testing.T) {
	srv := newServer(t)
	u := srv.URL() + "repos/octo/hello/deployments"

	var e map[string]any
	resp := do(t, "GET", u, "", "", &e)
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, "Requires authentication", e["message"])
	resp = do(t, "GET", u, "token nope", "", &e)
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, "Bad credentials", e["message"])
	assert.Equal(t, 200, do(t, "GET", u, "token "+tok, "", nil).StatusCode)
	assert.Equal(t, 200, do(t, "GET", u, "Bearer "+tok, "", nil).StatusCode)
	assert.Equal(t, 200, do(t, "GET", srv.EnterpriseURL()+"repos/octo/hello/deployments", "Bearer "+tok, "", nil).StatusCode)
	assert.Equal(t, 404, do(t, "GET", srv.URL()+"repos/octo/absent/deployments", "token "+tok, "", nil).StatusCode)

	resp = do(t, "GET", srv.URL()+"nope", "token "+tok, "", &e)
	assert.Equal(t, 404, resp.StatusCode)
	assert.Equal(t, "Not Found", e["message"])
	assert.Equal(t, 404, do(t, "PUT", u, "token "+tok, "", nil).StatusCode, "an unknown method is a 404, as on GitHub")
	assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, "4995", resp.Header.Get("X-RateLimit-Remaining"), "the fifth request with this token, whatever the scheme")

	var user githubtest.User
	do(t, "GET", srv.URL()+"user", "token "+tok, "", &user)
	assert.Equal(t, "alice", user.Login)
	assert.Equal(t, "User", user.Type)

	reqs := srv.Requests()
	require.Len(t, reqs, 9)
	assert.Equal(t, githubtest.Request{Route: githubtest.RouteListDeployments, Method: "GET", Path: "/repos/octo/hello/deployments", Status: 401}, reqs[0])
	assert.Equal(t, "user", reqs[2].Auth)
	assert.True(t, reqs[4].Enterprise)
	assert.Equal(t, "", reqs[6].Route)
	assert.Equal(t, 6, srv.Count(githubtest.RouteListDeployments))
	assert.Equal(t, 2, srv.Count(""))
}

func TestGitHubDoubleFaults(t *testing.T) {
	srv := newServer(t)
	u := srv.URL() + "repos/octo/hello/deployments"
	srv.FailNext(githubtest.RouteListDeployments, 2, githubtest.BadGateway())
	srv.FailNext(githubtest.RouteListDeployments, 1, githubtest.SecondaryRateLimit(3*time.Second))
	srv.FailNext(githubtest.AnyRoute, 1, githubtest.Error(503, "Service Unavailable"))
	assert.Equal(t, 3, srv.FaultsPending(githubtest.RouteListDeployments))
	assert.Equal(t, 1, srv.FaultsPending(githubtest.AnyRoute))

	assert.Equal(t, 502, do(t, "GET", u, "token "+tok, "", nil).StatusCode)
	assert.Equal(t, 2, srv.FaultsPending(githubtest.RouteListDeployments), "answered faults are no longer pending")
	assert.Equal(t, 502, do(t, "GET", u, "", "", nil).StatusCode, "faults answer before authentication")
	var e map[string]any
	resp := do(t, "GET", u, "token "+tok, "", &e)
	assert.Equal(t, 403, resp.StatusCode)
	assert.Equal(t, "3", resp.Header.Get("Retry-After"))
	assert.Equal(t, "4998", resp.Header.Get("X-RateLimit-Remaining"), "the token's second request")
	assert.Contains(t, e["documentation_url"], "secondary-rate-limits")
	assert.Equal(t, 503, do(t, "GET", srv.URL()+"user", "token "+tok, "", nil).StatusCode)
	assert.Equal(t, 200, do(t, "GET", u, "token "+tok, "", nil).StatusCode)

	reset := time.Now().Add(time.Minute)
	srv.FailNext(githubtest.RouteCreateDeployment, 1, githubtest.RateLimit(reset))
	resp = do(t, "POST", u, "token "+tok, `{"ref":"main"}`, nil)
	assert.Equal(t, 403, resp.StatusCode)
	assert.Equal(t, "0", resp.Header.Get("X-RateLimit-Remaining"))
	assert.Equal(t, fmt.Sprint(reset.Unix()), resp.Header.Get("X-RateLimit-Reset"))

	assert.Panics(t, func() { srv.FailNext("GET /nope", 1, githubtest.BadGateway()) })
}

func TestGitHubDoubleDeploymentsAndPagination(t *testing.T) {
	srv := newServer(t)
	base := srv.URL() + "repos/octo/hello/"
	var e map[string]any
	resp := do(t, "POST", base+"deployments", "token "+tok, `{"ref":"no-such-branch"}`, &e)
	assert.Equal(t, 422, resp.StatusCode)
	assert.Equal(t, "No ref found for: no-such-branch", e["message"])
	assert.Equal(t, 422, do(t, "POST", base+"deployments", "token "+tok, `{}`, nil).StatusCode)
	assert.Equal(t, 400, do(t, "POST", base+"deployments", "token "+tok, `{`, nil).StatusCode)

	var first map[string]any
	resp = do(t, "POST", base+"deployments", "token "+tok, `{"ref":"main","environment":"staging","required_contexts":[]}`, &first)
	require.Equal(t, 201, resp.StatusCode)
	for _, k := range []string{"url", "id", "node_id", "sha", "ref", "task", "payload", "original_environment", "environment",
		"description", "creator", "created_at", "updated_at", "statuses_url", "repository_url", "transient_environment", "production_environment"} {
		assert.Contains(t, first, k)
	}
	assert.Equal(t, "deploy", first["task"])
	assert.Equal(t, false, first["production_environment"])
	assert.Len(t, first["sha"], 40)
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`, first["created_at"])

	for i := range 4 {
		do(t, "POST", base+"deployments", "token "+tok, fmt.Sprintf(`{"ref":"%040x","environment":"staging"}`, i), nil)
	}
	var page []map[string]any
	resp = do(t, "GET", base+"deployments?environment=staging&per_page=2", "token "+tok, "", &page)
	require.Len(t, page, 2)
	assert.Equal(t, fmt.Sprintf("%040x", 3), page[0]["sha"], "newest first")
	link := resp.Header.Get("Link")
	assert.Contains(t, link, `page=2&per_page=2>; rel="next"`)
	assert.Contains(t, link, `page=3&per_page=2>; rel="last"`)
	assert.Contains(t, link, "environment=staging")
	resp = do(t, "GET", base+"deployments?environment=staging&per_page=2&page=3", "token "+tok, "", &page)
	require.Len(t, page, 1)
	assert.Equal(t, "main", page[0]["ref"])
	assert.Contains(t, resp.Header.Get("Link"), `rel="prev"`)
	assert.NotContains(t, resp.Header.Get("Link"), `rel="next"`)
	do(t, "GET", base+"deployments?sha="+fmt.Sprintf("%040x", 2), "token "+tok, "", &page)
	require.Len(t, page, 1)
	do(t, "GET", base+"deployments?environment=production", "token "+tok, "", &page)
	assert.Empty(t, page)
}

func TestGitHubDoubleDeploymentStatusesAutoInactiveAndValidation(t *testing.T) {
	srv := newServer(t)
	base := srv.URL() + "repos/octo/hello/"
	// auto_inactive reaches older successful non-transient deployments of the environment only.
	id := func(m map[string]any) int64 { return int64(m["id"].(float64)) }
	var d1, d2, tr map[string]any
	do(t, "POST", base+"deployments", "token "+tok, `{"ref":"main","environment":"qa"}`, &d1)
	do(t, "POST", base+"deployments", "token "+tok, `{"ref":"main","environment":"qa","transient_environment":true}`, &tr)
	do(t, "POST", base+"deployments", "token "+tok, `{"ref":"main","environment":"qa"}`, &d2)
	for _, d := range []map[string]any{d1, tr} {
		resp := do(t, "POST", fmt.Sprintf("%sdeployments/%d/statuses", base, id(d)), "token "+tok, `{"state":"success"}`, nil)
		require.Equal(t, 201, resp.StatusCode)
	}
	var st map[string]any
	resp := do(t, "POST", fmt.Sprintf("%sdeployments/%d/statuses", base, id(d2)), "token "+tok, `{"state":"success","log_url":"https://log","environment_url":"https://env"}`, &st)
	require.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, "https://log", st["target_url"])
	assert.Equal(t, "qa", st["environment"])
	var sts []map[string]any
	do(t, "GET", fmt.Sprintf("%sdeployments/%d/statuses", base, id(d1)), "token "+tok, "", &sts)
	require.Len(t, sts, 2)
	assert.Equal(t, "inactive", sts[0]["state"], "newest first")
	do(t, "GET", fmt.Sprintf("%sdeployments/%d/statuses", base, id(tr)), "token "+tok, "", &sts)
	assert.Len(t, sts, 1, "transient deployments are not auto-inactivated")

	assert.Equal(t, 422, do(t, "POST", fmt.Sprintf("%sdeployments/%d/statuses", base, id(d2)), "token "+tok, `{"state":"done"}`, nil).StatusCode)
	assert.Equal(t, 422, do(t, "POST", fmt.Sprintf("%sdeployments/%d/statuses", base, id(d2)), "token "+tok, `{"state":"error","description":"`+strings.Repeat("x", 141)+`"}`, nil).StatusCode)
	assert.Equal(t, 404, do(t, "POST", base+"deployments/1/statuses", "token "+tok, `{"state":"error"}`, nil).StatusCode)
}

func TestGitHubDoubleCommentsAndContents(t *testing.T) {
	srv := newServer(t)
	base := srv.URL() + "repos/octo/hello/"
	for i := range 35 {
		srv.AddComment("octo", "hello", 7, "bob", fmt.Sprint(i))
	}
	var page []githubtest.Comment
	resp := do(t, "GET", base+"issues/7/comments", "token "+tok, "", &page)
	assert.Len(t, page, 30, "30 per page by default")
	assert.Equal(t, "0", page[0].Body, "oldest first")
	assert.Contains(t, resp.Header.Get("Link"), `rel="next"`)
	do(t, "GET", base+"issues/7/comments?per_page=500", "token "+tok, "", &page)
	assert.Len(t, page, 35, "at most 100 per page")

	var c githubtest.Comment
	resp = do(t, "POST", base+"issues/7/comments", "token "+tok, `{"body":"hi"}`, &c)
	require.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, "alice", c.User.Login)
	assert.Contains(t, c.HTMLURL, fmt.Sprintf("/octo/hello/pull/7#issuecomment-%d", c.ID))
	assert.Equal(t, 422, do(t, "POST", base+"issues/7/comments", "token "+tok, `{"body":""}`, nil).StatusCode)
	resp = do(t, "PATCH", fmt.Sprintf("%sissues/comments/%d", base, c.ID), "token "+tok, `{"body":"edited"}`, &c)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "edited", c.Body)
	assert.Equal(t, 404, do(t, "PATCH", base+"issues/comments/1", "token "+tok, `{"body":"x"}`, nil).StatusCode)
	cs := srv.Comments("octo", "hello", 7)
	require.Len(t, cs, 36)
	assert.Equal(t, 1, cs[35].Edits)
	assert.Equal(t, 204, do(t, "DELETE", fmt.Sprintf("%sissues/comments/%d", base, c.ID), "token "+tok, "", nil).StatusCode)
	assert.Len(t, srv.Comments("octo", "hello", 7), 35)

	srv.SetFile("octo", "hello", "main", "hello.txt", "hello\n")
	srv.SetFile("octo", "hello", "main", "dir/a.yml", strings.Repeat("a", 100))
	var f map[string]any
	resp = do(t, "GET", base+"contents/hello.txt", "token "+tok, "", &f)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "file", f["type"])
	assert.Equal(t, "base64", f["encoding"])
	assert.Equal(t, "ce013625030ba8dba906f756967f9e9ca394464a", f["sha"], "git's blob SHA")
	raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(f["content"].(string), "\n", ""))
	require.NoError(t, err)
	assert.Equal(t, "hello\n", string(raw))
	do(t, "GET", base+"contents/dir/a.yml?ref=main", "token "+tok, "", &f)
	for _, line := range strings.Split(strings.TrimSuffix(f["content"].(string), "\n"), "\n") {
		assert.LessOrEqual(t, len(line), 60, "base64 is wrapped like GitHub's")
	}
	var dir []map[string]any
	do(t, "GET", base+"contents/dir", "token "+tok, "", &dir)
	require.Len(t, dir, 1)
	assert.Equal(t, "dir/a.yml", dir[0]["path"])
	do(t, "GET", base+"contents/", "token "+tok, "", &dir)
	assert.Len(t, dir, 2)
	assert.Equal(t, 404, do(t, "GET", base+"contents/hello.txt?ref=other", "token "+tok, "", nil).StatusCode)
	assert.Equal(t, 404, do(t, "GET", base+"contents/absent", "token "+tok, "", nil).StatusCode)
}

func signJWT(t *testing.T, key *rsa.PrivateKey, alg string, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	unsigned := enc(map[string]string{"alg": alg, "typ": "JWT"}) + "." + enc(claims)
	digest := sha256.Sum256([]byte(unsigned))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	require.NoError(t, err)
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestGitHubDoubleAppTokens(t *testing.T) {
	srv := newServer(t)
	key, _ := githubtest.GenerateAppKey(t)
	other, _ := githubtest.GenerateAppKey(t)
	srv.AddApp(11, "drydock", &key.PublicKey)
	srv.AddInstallation(11, 22)
	now := time.Now().Unix()
	good := map[string]any{"iss": "11", "iat": now - 30, "exp": now + 90}
	mint := func(jwt string, installation int64) (*http.Response, map[string]any) {
		var out map[string]any
		resp := do(t, "POST", fmt.Sprintf("%sapp/installations/%d/access_tokens", srv.URL(), installation), "Bearer "+jwt, "", &out)
		return resp, out
	}

	for name, jwt := range map[string]string{
		"wrong key":       signJWT(t, other, "RS256", good),
		"wrong alg":       signJWT(t, key, "HS256", good),
		"unknown app":     signJWT(t, key, "RS256", map[string]any{"iss": 12, "iat": now, "exp": now + 60}),
		"expired":         signJWT(t, key, "RS256", map[string]any{"iss": 11, "iat": now - 700, "exp": now - 100}),
		"too long-lived":  signJWT(t, key, "RS256", map[string]any{"iss": 11, "iat": now, "exp": now + 3600}),
		"from the future": signJWT(t, key, "RS256", map[string]any{"iss": 11, "iat": now + 300, "exp": now + 400}),
		"garbage":         "a.b.c",
	} {
		resp, _ := mint(jwt, 22)
		assert.Equal(t, 401, resp.StatusCode, name)
	}
	resp, _ := mint(signJWT(t, key, "RS256", good), 23)
	assert.Equal(t, 404, resp.StatusCode, "unknown installation")
	assert.Equal(t, 0, srv.InstallationTokens(22))

	resp, out := mint(signJWT(t, key, "RS256", map[string]any{"iss": 11, "iat": now, "exp": now + 60}), 22) // numeric iss is fine too
	require.Equal(t, 201, resp.StatusCode)
	token := out["token"].(string)
	assert.True(t, strings.HasPrefix(token, "ghs_"))
	exp, err := time.Parse(time.RFC3339, out["expires_at"].(string))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Hour), exp, 5*time.Second)
	assert.Equal(t, 1, srv.InstallationTokens(22))

	var app githubtest.App
	do(t, "GET", srv.URL()+"app", "Bearer "+signJWT(t, key, "RS256", good), "", &app)
	assert.Equal(t, "drydock", app.Slug)
	assert.Equal(t, 401, do(t, "GET", srv.URL()+"app", "token "+token, "", nil).StatusCode, "GET /app needs the JWT")
	assert.Equal(t, 403, do(t, "GET", srv.URL()+"user", "token "+token, "", nil).StatusCode, "an installation is not a user")

	var c githubtest.Comment
	require.Equal(t, 201, do(t, "POST", srv.URL()+"repos/octo/hello/issues/1/comments", "token "+token, `{"body":"x"}`, &c).StatusCode)
	assert.Equal(t, "drydock[bot]", c.User.Login)
	require.NotNil(t, c.PerformedViaGitHubApp)
	assert.Equal(t, "drydock", c.PerformedViaGitHubApp.Slug)

	// Tokens stop working when they expire.
	srv.SetInstallationTokenTTL(0)
	_, out = mint(signJWT(t, key, "RS256", good), 22)
	assert.Equal(t, 401, do(t, "GET", srv.URL()+"repos/octo/hello/deployments", "token "+out["token"].(string), "", nil).StatusCode)
}
