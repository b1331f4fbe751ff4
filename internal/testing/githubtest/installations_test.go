package githubtest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

// An App finds its installations by ID and by account, as GitHub answers
// them: the account, and the permissions granted, which also reach the
// tokens minted; an account it is not installed on is 404, and another
// App sees none of them.
func TestGitHubDoubleInstallations(t *testing.T) {
	srv := newServer(t)
	key, _ := githubtest.GenerateAppKey(t)
	other, _ := githubtest.GenerateAppKey(t)
	srv.AddApp(11, "drydock", &key.PublicKey)
	srv.AddApp(12, "another", &other.PublicKey)
	srv.AddInstallation(11, 22)
	srv.SetInstallationAccount(22, "octo-org", "Organization")
	now := time.Now().Unix()
	jwt := "Bearer " + signJWT(t, key, "RS256", map[string]any{"iss": 11, "iat": now - 30, "exp": now + 90})

	var in struct {
		ID          int64             `json:"id"`
		Account     githubtest.User   `json:"account"`
		Permissions map[string]string `json:"permissions"`
	}
	require.Equal(t, 200, do(t, "GET", srv.URL()+"app/installations/22", jwt, "", &in).StatusCode)
	assert.Equal(t, int64(22), in.ID)
	assert.Equal(t, "octo-org", in.Account.Login)
	assert.Equal(t, "write", in.Permissions["organization_self_hosted_runners"])
	require.Equal(t, 200, do(t, "GET", srv.URL()+"orgs/OCTO-ORG/installation", jwt, "", &in).StatusCode, "logins are case-insensitive")
	assert.Equal(t, int64(22), in.ID)
	assert.Equal(t, 404, do(t, "GET", srv.URL()+"users/octo-org/installation", jwt, "", nil).StatusCode, "an organization, not a user")
	assert.Equal(t, 404, do(t, "GET", srv.URL()+"orgs/elsewhere/installation", jwt, "", nil).StatusCode)
	assert.Equal(t, 404, do(t, "GET", srv.URL()+"app/installations/23", jwt, "", nil).StatusCode)
	otherJWT := "Bearer " + signJWT(t, other, "RS256", map[string]any{"iss": 12, "iat": now - 30, "exp": now + 90})
	assert.Equal(t, 404, do(t, "GET", srv.URL()+"app/installations/22", otherJWT, "", nil).StatusCode)
	assert.Equal(t, 401, do(t, "GET", srv.URL()+"app/installations/22", "token nope", "", nil).StatusCode)
	assert.Equal(t, 404, do(t, "GET", srv.URL()+"app/installations/x22", jwt, "", nil).StatusCode)
	// Minting a token finds the installation the same way.
	for _, c := range []struct{ auth, id string }{{otherJWT, "22"}, {jwt, "23"}, {jwt, "x22"}} {
		var e map[string]any
		require.Equal(t, 404, do(t, "POST", srv.URL()+"app/installations/"+c.id+"/access_tokens", c.auth, "", &e).StatusCode, c.id)
		assert.Equal(t, "Not Found", e["message"])
	}
	assert.Zero(t, srv.InstallationTokens(22))

	// An owner who did not accept the runner permissions.
	srv.SetInstallationPermissions(22, map[string]string{"contents": "read", "metadata": "read"})
	in.Permissions = nil // json merges into a map
	do(t, "GET", srv.URL()+"app/installations/22", jwt, "", &in)
	assert.Equal(t, map[string]string{"contents": "read", "metadata": "read"}, in.Permissions)
	var tok map[string]any
	require.Equal(t, 201, do(t, "POST", fmt.Sprintf("%sapp/installations/22/access_tokens", srv.URL()), jwt, "", &tok).StatusCode)
	assert.Equal(t, map[string]any{"contents": "read", "metadata": "read"}, tok["permissions"])
}

// A classic token's answers list its scopes; a fine-grained token's none.
func TestGitHubDoubleTokenScopes(t *testing.T) {
	srv := newServer(t)
	srv.AddToken("ghp_classic", "alice")
	srv.AddToken("github_pat_fine", "bob")
	srv.SetTokenScopes("ghp_classic", "repo", "admin:org")
	resp := do(t, "GET", srv.URL()+"user", "token ghp_classic", "", nil)
	assert.Equal(t, "repo, admin:org", resp.Header.Get("X-OAuth-Scopes"))
	resp = do(t, "GET", srv.URL()+"user", "token github_pat_fine", "", nil)
	_, present := resp.Header["X-Oauth-Scopes"]
	assert.False(t, present)
}

// GET /app lists the events the App subscribes to; GET /app/hook/config
// its webhook URL, the secret masked, or 404 when it has none.
func TestGitHubDoubleAppWebhook(t *testing.T) {
	srv := newServer(t)
	key, _ := githubtest.GenerateAppKey(t)
	srv.AddApp(11, "drydock", &key.PublicKey)
	now := time.Now().Unix()
	jwt := "Bearer " + signJWT(t, key, "RS256", map[string]any{"iss": 11, "iat": now - 30, "exp": now + 90})
	assert.Equal(t, 404, do(t, "GET", srv.URL()+"app/hook/config", jwt, "", nil).StatusCode)
	srv.SetAppWebhook(11, "https://hooks.example.com/webhooks/github")
	var hook map[string]string
	require.Equal(t, 200, do(t, "GET", srv.URL()+"app/hook/config", jwt, "", &hook).StatusCode)
	assert.Equal(t, "https://hooks.example.com/webhooks/github", hook["url"])
	assert.Equal(t, "********", hook["secret"])

	var app githubtest.App
	do(t, "GET", srv.URL()+"app", jwt, "", &app)
	assert.Equal(t, []string{"pull_request", "workflow_job"}, app.Events)
	srv.SetAppEvents(11, "pull_request")
	do(t, "GET", srv.URL()+"app", jwt, "", &app)
	assert.Equal(t, []string{"pull_request"}, app.Events)
}
