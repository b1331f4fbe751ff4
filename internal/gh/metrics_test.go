package gh_test

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

// The rate limit GitHub reports is exported per credential: the App's JWT
// calls and each installation's token have budgets of their own.
func TestRateLimitRecordedPerCredential(t *testing.T) {
	srv := githubtest.New(t)
	cs := appClients(t, srv, srv.URL(), 0)
	reg := metrics.New("gh-test")
	cs.SetMetrics(metrics.NewGitHub(reg))
	api, err := cs.API(installationID)
	require.NoError(t, err)
	for range 3 {
		_, err = api.UpsertComment(ctx(t), owner, repo, 42, "hello")
		require.NoError(t, err)
	}

	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	// The App's own calls (its JWT): the identity lookup (GET /app) and the
	// installation token's mint. The installation's token made the rest: a
	// list, a create and two edits.
	assert.Contains(t, text, `drydock_github_rate_limit_remaining{credential="app",resource="core"} 4998`)
	assert.Contains(t, text, `drydock_github_rate_limit_remaining{credential="installation:777",resource="core"} 4996`)
	assert.Contains(t, text, `drydock_github_rate_limit_limit{credential="installation:777",resource="core"} 5000`)
	assert.Contains(t, text, `drydock_github_api_requests_total{credential="app",status="200"} 1`)
	assert.Contains(t, text, `drydock_github_api_requests_total{credential="app",status="201"} 1`)
	assert.Contains(t, text, `drydock_github_api_requests_total{credential="installation:777",status="201"} 1`)
}

// A token's client records under "token".
func TestRateLimitRecordedForAToken(t *testing.T) {
	srv := githubtest.New(t)
	srv.AddToken("ghp_metrics", "drydock-bot")
	srv.AddRepo(owner, repo)
	cs, err := gh.NewClients(gh.Config{Token: "ghp_metrics", APIURL: srv.URL()})
	require.NoError(t, err)
	reg := metrics.New("gh-test")
	cs.SetMetrics(metrics.NewGitHub(reg))
	api, err := cs.API(0)
	require.NoError(t, err)
	_, err = api.UpsertComment(ctx(t), owner, repo, 7, "hi")
	require.NoError(t, err)

	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Contains(t, rec.Body.String(), `drydock_github_rate_limit_remaining{credential="token",resource="core"} 4997`)
	assert.NotContains(t, rec.Body.String(), "ghp_metrics")
}
