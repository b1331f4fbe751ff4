package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
)

func TestContinueAsNewCarriesState(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SetContinueAsNewSuggested(true) }, time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalTouch, nil) }, time.Hour+time.Second)
	start(env)
	next := continuedAs(t, env)
	assert.Equal(t, "sha1", next.Carry.Status.DeployedSHA)
	assert.Equal(t, "dm-1", next.Carry.Status.MachineID)
	assert.True(t, next.Carry.SetupDone)
	assert.Equal(t, []string{"d1"}, next.Carry.SeenDeliveries)
	assert.Equal(t, 1, w.creates)
	assert.True(t, next.Carry.Awake.Awake(), "the running machine's awake interval is carried")
	assert.False(t, next.Carry.ReportedAt.IsZero())

	// The next run picks up where this one stopped: a carried push deploys
	// on the same machine without setup or seed, and no new machine.
	env2, w2 := newTestEnv(t, defaultSettings)
	next.Carry.Pending = []PullRequestEvent{prEvent("synchronize", "sha2", "d2"), prEvent("synchronize", "sha1", "d1")}
	env2.RegisterDelayedCallback(func() {
		st := status(t, env2)
		assert.Equal(t, "sha2", st.DeployedSHA)
		env2.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha2", "d3"))
	}, time.Hour)
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.NoError(t, env2.GetWorkflowError())
	assert.Equal(t, 0, w2.creates)
	assert.Equal(t, []string{"checkout sha2", "build[0] compile", "start app"}, w2.names())
	assert.Equal(t, 1, w2.deletes)
}

// continuedAs returns the input a run that continued as new handed over.
func continuedAs(t *testing.T, env *testsuite.TestWorkflowEnvironment) PreviewInput {
	t.Helper()
	next := continuedAsNew[PreviewInput](t, env, PreviewLifecycleName)
	require.NotNil(t, next.Carry)
	return next
}

// A head whose deploy failed is not rebuilt (nor reported failed again) by
// the run that continues as new: only a push or a redeploy retries it.
func TestFailedHeadNotRebuiltAfterContinueAsNew(t *testing.T) {
	failBad := func(_ context.Context, cmd activities.Command) (activities.CommandResult, error) {
		if cmd.Env["DRYDOCK_SHA"] == "bad" {
			return activities.CommandResult{}, temporal.NewNonRetryableApplicationError("exit 1", activities.ErrTypeCommandFailed, nil)
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env, w := newTestEnv(t, defaultSettings)
	w.buildHook = failBad
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "good", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "bad", "d2")) }, time.Hour)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewFailed, status(t, env).Phase)
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(SignalTouch, nil)
	}, 2*time.Hour)
	start(env)
	next := continuedAs(t, env)

	env2, w2 := newTestEnv(t, defaultSettings)
	w2.buildHook = failBad
	env2.RegisterDelayedCallback(func() {
		st := status(t, env2)
		assert.Equal(t, PreviewFailed, st.Phase)
		assert.Equal(t, "good", st.DeployedSHA)
		env2.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"})
	}, time.Hour)
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.NoError(t, env2.GetWorkflowError())
	assert.Empty(t, w2.names(), "the failed head is not built again")
	assert.Equal(t, []string{"destroyed"}, w2.reports, "nor reported failed again")
}

// A destroy that arrives while the run waits to continue as new tears the
// next run down with the destroy's reason.
func TestDestroyReasonSurvivesContinueAsNew(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.reportTakes = 30 * time.Second })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(w.autosleep, 20*time.Minute)
	// The wake finds the machine asleep and refreshes the PR comment (30s):
	// the run waits for that before it continues as new.
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateWake, "w1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("wake rejected: %v", err) }, OnAccept: func() {},
			OnComplete: func(_ any, err error) { assert.NoError(t, err) },
		})
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(SignalTouch, nil)
	}, time.Hour+time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "destroyed by alice"})
	}, time.Hour+2*time.Second)
	start(env)
	next := continuedAs(t, env)

	env2, w2 := newTestEnv(t, defaultSettings)
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.NoError(t, env2.GetWorkflowError())
	assert.Equal(t, 1, w2.deletes)
	require.NotEmpty(t, w2.reportLog)
	assert.Equal(t, "torn down: destroyed by alice", w2.reportLog[len(w2.reportLog)-1].Report.Note)

	// Runs from before the carried reason handed a destroy over as a
	// synthetic closed event with the reason as its title.
	legacy := next
	carry := *next.Carry
	carry.Teardown, carry.Pending = "", []PullRequestEvent{{Action: "closed", Title: "destroyed by bob"}}
	legacy.Carry = &carry
	env3, w3 := newTestEnv(t, defaultSettings)
	env3.ExecuteWorkflow(PreviewLifecycleName, legacy)
	require.NoError(t, env3.GetWorkflowError())
	require.NotEmpty(t, w3.reportLog)
	assert.Equal(t, "torn down: destroyed by bob", w3.reportLog[len(w3.reportLog)-1].Report.Note)
}

// A pull request reopened while its preview is being torn down gets a
// fresh preview: the signal is not dropped with the completed run.
func TestReopenedDuringTeardownStartsAFreshPreview(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.deleteTakes = time.Minute })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2")) }, time.Hour)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewTearingDown, status(t, env).Phase)
		env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) // a redelivery: nothing
		env.SignalWorkflow(SignalPullRequest, prEvent("reopened", "sha2", "d3"))
	}, time.Hour+10*time.Second)
	start(env)
	assert.Equal(t, 1, w.deletes)
	assert.Equal(t, []string{"deploying", "ready", "destroyed"}, w.reports)
	next := continuedAs(t, env)
	assert.Equal(t, PreviewPending, next.Carry.Status.Phase)
	assert.Empty(t, next.Carry.Status.MachineID)
	assert.Empty(t, next.Carry.Teardown)
	require.Len(t, next.Carry.Pending, 1)
	assert.Equal(t, "reopened", next.Carry.Pending[0].Action)

	env2, w2 := newTestEnv(t, defaultSettings)
	env2.RegisterDelayedCallback(func() {
		st := status(t, env2)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha2", st.DeployedSHA)
		env2.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha2", "d4"))
	}, time.Hour)
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.NoError(t, env2.GetWorkflowError())
	assert.Equal(t, 1, w2.creates, "a new machine")
	assert.Equal(t, []string{"checkout sha2", "setup[0] tools", "build[0] compile", "seed[0] data", "start app"}, w2.names())
	assert.Equal(t, []string{"deploying", "ready", "destroyed"}, w2.reports)
}

// An opened delivery that arrives during the teardown of its closed pull
// request (GitHub does not promise order) says nothing and creates nothing.
func TestLateOpenedDuringTeardownCreatesNothing(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.deleteTakes = time.Minute })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		w.mu.Lock()
		w.prClosed = true
		w.mu.Unlock()
		env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2"))
	}, time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha2", "d3")) }, time.Hour+10*time.Second)
	start(env)
	next := continuedAs(t, env)
	env2, w2 := newTestEnv(t, defaultSettings, func(w *world) { w.prClosed = true })
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.True(t, env2.IsWorkflowCompleted())
	require.NoError(t, env2.GetWorkflowError())
	assert.Zero(t, w2.creates)
	assert.Empty(t, w2.reports)
	assert.Empty(t, w2.statuses)
}
