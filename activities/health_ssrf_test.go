package activities_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
)

// internalService stands for something only the worker can reach (a
// metadata endpoint, an admin API): it counts the requests it gets.
func internalService(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("internal-secret-token"))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// An app whose health path redirects to an internal URL is healthy (a 3xx
// is the app answering), and the worker never requests the redirect's
// target: the health check cannot be turned into a request to anywhere the
// worker can reach. This holds for a configured HTTPClient too.
func TestWaitHealthyDoesNotFollowRedirects(t *testing.T) {
	secret, hits := internalService(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, secret.URL+"/secret", http.StatusFound)
	}))
	defer app.Close()

	for name, hc := range map[string]*http.Client{"default client": nil, "configured client": {Timeout: 2 * time.Second}} {
		p := &activities.Previews{HTTPClient: hc}
		var s testsuite.WorkflowTestSuite
		env := s.NewTestActivityEnvironment()
		env.RegisterActivity(p)
		_, err := env.ExecuteActivity(p.WaitHealthy, activities.HealthInput{URL: app.URL + "/healthz", Timeout: 2 * time.Second})
		require.NoError(t, err, name)
		assert.Zero(t, hits.Load(), "%s: the redirect target was requested", name)
	}
}

// An unhealthy app's answer stays in the error for operators (its message
// is in workflow history) and is typed AppUnhealthy, so the workflow
// reports a fixed text on the PR instead (see workflows).
func TestWaitHealthyUnhealthyIsTyped(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "db password is hunter2", http.StatusInternalServerError)
	}))
	defer app.Close()
	p := &activities.Previews{}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(p)
	_, err := env.ExecuteActivity(p.WaitHealthy, activities.HealthInput{URL: app.URL + "/healthz", Timeout: time.Second})
	require.Error(t, err)
	assert.Contains(t, err.Error(), activities.ErrTypeAppUnhealthy)
	assert.Contains(t, err.Error(), "500", "operators see the last answer")
}

// A health check leaves no connection open to the app it checked: the
// worker does not call that app again, and thousands of deploys would
// otherwise keep a pool of idle connections (and their goroutines) alive.
func TestWaitHealthyLeavesNoConnectionOpen(t *testing.T) {
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	var open atomic.Int64
	app.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	app.Start()
	defer app.Close()
	p := &activities.Previews{}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(p)
	_, err := env.ExecuteActivity(p.WaitHealthy, activities.HealthInput{URL: app.URL + "/healthz", Timeout: 2 * time.Second})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return open.Load() == 0 }, 5*time.Second, 10*time.Millisecond,
		"the probe's connection is still open")
}
