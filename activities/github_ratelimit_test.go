package activities_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

// An installation whose hourly budget is spent waits for the reset GitHub
// named, without calling GitHub meanwhile, and carries on after it; another
// installation (its own budget) is not held up.
func TestRateLimitedInstallationWaitsForTheResetAlone(t *testing.T) {
	srv := githubtest.New(t)
	key, keyFile := githubtest.GenerateAppKey(t)
	srv.AddApp(31, "drydock-preview", &key.PublicKey)
	srv.AddInstallation(31, 4100)
	srv.AddInstallation(31, 4200)
	pr := githubtest.PullRequest{Number: 7, State: "open", HeadSHA: headSHA, HeadRef: "feature"}
	srv.SetPullRequest(ghOwner, ghRepo, pr)
	srv.SetPullRequest("other", ghRepo, pr)
	clients, err := gh.NewClients(gh.Config{AppID: 31, AppPrivateKeyFile: keyFile, APIURL: srv.URL()})
	require.NoError(t, err)
	a, env, _ := githubActivities(t, clients)
	state := func(owner string, installation int64) (activities.PullRequestState, error) {
		v, err := env.ExecuteActivity(a.PullRequestState, activities.PullRequestRef{Owner: owner, Repo: ghRepo, Number: 7, InstallationID: installation})
		var st activities.PullRequestState
		if err == nil {
			require.NoError(t, v.Get(&st))
		}
		return st, err
	}

	// GitHub names the reset in whole seconds; a few seconds ahead leaves
	// the checks below time to run on a loaded machine.
	reset := time.Now().Add(3 * time.Second).Truncate(time.Second)
	srv.FailNext(githubtest.RouteGetPullRequest, 1, githubtest.RateLimit(reset))
	_, err = state(ghOwner, 4100)
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeGitHubRateLimited, ae.Type())
	assert.False(t, ae.NonRetryable(), "a spent budget fails no preview")
	assert.Greater(t, ae.NextRetryDelay(), time.Duration(0))
	assert.LessOrEqual(t, ae.NextRetryDelay(), time.Until(reset)+time.Second+time.Second/10, "retried once the budget is back, not before")
	asked := srv.Count(githubtest.RouteGetPullRequest)

	// Until the reset, a retry is answered by the client: GitHub is not asked.
	_, err = state(ghOwner, 4100)
	assert.Equal(t, activities.ErrTypeGitHubRateLimited, appError(t, err).Type())
	assert.Equal(t, asked, srv.Count(githubtest.RouteGetPullRequest), "no request while the budget is spent")

	// The other installation has its own budget.
	st, err := state("other", 4200)
	require.NoError(t, err)
	assert.True(t, st.Open)

	// After the reset, the first installation carries on.
	time.Sleep(time.Until(reset) + 50*time.Millisecond)
	st, err = state(ghOwner, 4100)
	require.NoError(t, err)
	assert.True(t, st.Known && st.Open)
	assert.Equal(t, headSHA, st.HeadSHA)
}
