package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/gh"
)

func TestPreviewDeploysThenTearsDownOnClose(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha1", st.DeployedSHA)
		assert.Equal(t, "dm-1", st.MachineID)
		assert.Equal(t, "http://127.0.0.1:9999", st.URL)
		// A redelivered webhook changes nothing.
		env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1"))
	}, time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2")) }, 2*time.Minute)
	start(env)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1", "setup[0] tools", "build[0] compile", "seed[0] data", "start app"}, w.names())
	assert.Equal(t, 1, w.creates)
	assert.Equal(t, 1, w.previews)
	assert.Equal(t, 1, w.deletes, "the machine is deleted on close")
	assert.Equal(t, []string{"deploying", "ready", "destroyed"}, w.reports)
	assert.Equal(t, []string{"success", "inactive"}, w.statuses)
	assert.Contains(t, w.reportLog[2].Report.Note, "pull request closed")

	// PR data reaches commands only as environment variables.
	for _, c := range w.commands {
		assert.Equal(t, evilBranch, c.Env["DRYDOCK_BRANCH"])
		assert.Equal(t, "sha1", c.Env["DRYDOCK_SHA"])
		assert.Equal(t, "hi", c.Env["GREETING"])
		for _, a := range c.Argv {
			assert.NotContains(t, a, evilBranch, "untrusted data is never part of a command")
		}
	}
}

// GitHub does not promise delivery order: an opened delivery that arrives
// after the pull request closed (its closed delivery found no workflow)
// must not create a machine.
func TestOpenedArrivingAfterCloseCreatesNothing(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.prClosed = true
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	start(env)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Zero(t, w.creates, "no machine for a closed pull request")
	assert.Empty(t, w.names())
	assert.Empty(t, w.reports, "nothing is said on a closed pull request")
	assert.Empty(t, w.statuses)
}

// A close while the machine is being created must not cancel the create
// half-way (Dedalus may have made the machine already): the create finishes,
// and the teardown deletes the machine it returned.
func TestCloseDuringCreateDeletesTheMachine(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.createTakes = time.Minute })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2")) }, 10*time.Second)
	start(env)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 1, w.creates)
	assert.Equal(t, 1, w.deletes, "the machine whose create was in flight is deleted")
	assert.Empty(t, w.names(), "nothing runs on it")
}

func TestNewerPushSupersedesInFlightDeploy(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.buildHook = func(ctx context.Context, cmd activities.Command) (activities.CommandResult, error) {
		if cmd.Env["DRYDOCK_SHA"] != "sha1" {
			return activities.CommandResult{Succeeded: true}, nil
		}
		// While sha1 builds, sha2 is pushed. (The test environment resolves
		// the cancelled activity at once; its result is then discarded.)
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha2", "d2"))
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha2", st.DeployedSHA)
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"})
	}, time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"RunCommands"}, w.cancelled, "the sha1 build (with the seed after it) was cancelled")
	assert.Equal(t, []string{"checkout sha1", "setup[0] tools", "build[0] compile",
		"checkout sha2", "build[0] compile", "seed[0] data", "start app"}, w.names(),
		"setup is not repeated; the app starts once, on sha2")
	assert.Equal(t, 1, w.creates)
	assert.Equal(t, []string{"deploying", "deploying", "ready", "destroyed"}, w.reports)
}

// A push back to the deployed head while a redeploy runs (a revert, a
// force-push) cancels the redeploy, which may have checked out and built
// the other head already: the deployed head is deployed again in full.
func TestPushBackToDeployedHeadRedeploysIt(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.buildHook = func(ctx context.Context, cmd activities.Command) (activities.CommandResult, error) {
		if cmd.Env["DRYDOCK_SHA"] == "sha2" {
			env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha1", "d3"))
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha2", "d2")) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase, "not left in deploying")
		assert.Equal(t, "sha1", st.DeployedSHA)
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"})
	}, time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1", "setup[0] tools", "build[0] compile", "seed[0] data", "start app",
		"checkout sha2", "build[0] compile",
		"checkout sha1", "build[0] compile", "start app"}, w.names(), "sha1 is checked out, built and started again")
}

func TestFailedStepIsReportedAndNotRetried(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	builds := 0
	w.buildHook = func(_ context.Context, cmd activities.Command) (activities.CommandResult, error) {
		builds++
		if cmd.Env["DRYDOCK_SHA"] == "bad" {
			res := activities.CommandResult{ExitCode: 2, StderrTail: "main.go:3: syntax error"}
			return res, temporal.NewNonRetryableApplicationError("build[0] compile: exit 2", activities.ErrTypeCommandFailed, nil, res)
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "bad", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewFailed, st.Phase)
		assert.Contains(t, st.LastError, "exit 2")
		assert.Equal(t, "dm-1", st.MachineID, "kept for debugging")
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "good", "d2"))
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewReady, status(t, env).Phase)
		env.SignalWorkflow(SignalPullRequest, prEvent("closed", "good", "d3"))
	}, 2*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 2, builds, "the failed build ran once, the fixed one once")
	assert.Equal(t, 1, w.creates, "the failed machine was reused")
	assert.Equal(t, []string{"deploying", "failed", "deploying", "ready", "destroyed"}, w.reports)
	failed := w.reportLog[1].Report
	assert.Equal(t, "build[0] compile", failed.FailedStep)
	assert.Equal(t, "the step failed (exit code 2)", failed.Error)
	assert.Empty(t, failed.OutputTail, "the step's output stays in the workflow")
	assert.NotContains(t, gh.RenderComment(failed), "syntax error")
	assert.Contains(t, failed.Note, "kept for debugging")
	assert.Equal(t, []string{"failure", "success", "inactive"}, w.statuses)
}

func TestFailedMachineDeletedWhenNotKept(t *testing.T) {
	settings := defaultSettings
	settings.KeepFailedMachine = false
	env, w := newTestEnv(t, settings)
	w.buildHook = func(context.Context, activities.Command) (activities.CommandResult, error) {
		return activities.CommandResult{}, temporal.NewNonRetryableApplicationError("exit 1", activities.ErrTypeCommandFailed, nil)
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "bad", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewFailed, st.Phase)
		assert.Empty(t, st.MachineID)
		env.SignalWorkflow(SignalDestroy, DestroyRequest{})
	}, time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 1, w.deletes)
}

func TestStalePreviewIsTornDown(t *testing.T) {
	settings := defaultSettings
	settings.StaleAfter = 24 * time.Hour
	env, w := newTestEnv(t, settings)
	var begin time.Time
	env.RegisterDelayedCallback(func() {
		begin = env.Now()
		env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1"))
	}, 0)
	// Traffic at 20h keeps it alive until 44h.
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalTouch, nil) }, 20*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	lived := env.Now().Sub(begin)
	assert.GreaterOrEqual(t, lived, 44*time.Hour)
	assert.Less(t, lived, 46*time.Hour)
	assert.Equal(t, 1, w.deletes)
	require.NotEmpty(t, w.reportLog)
	last := w.reportLog[len(w.reportLog)-1].Report
	assert.Equal(t, "destroyed", last.State)
	assert.Contains(t, last.Note, "stale")
}

// An app that never gets healthy is reported on the PR with a fixed text
// and the step's name: neither the upstream URL, nor the app's answer, nor
// its log (which RunCommand returns only when asked) reaches the comment or
// the deployment status. Operators find them in the workflow (LastError,
// the app log activity's result).
func TestUnhealthyAppReportLeaksNothing(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.unhealthy = true })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewFailed, st.Phase)
		assert.Contains(t, st.LastError, "http://10.1.2.3:8080/healthz", "operators see the details")
		env.SignalWorkflow(SignalDestroy, DestroyRequest{})
	}, time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"deploying", "failed", "destroyed"}, w.reports)
	last := w.commands[len(w.commands)-1]
	assert.Equal(t, "app log", last.Name)
	assert.True(t, last.KeepOutput, "the log is a successful command's output")

	failed := w.reportLog[1].Report
	assert.Equal(t, "wait for /healthz", failed.FailedStep)
	body := gh.RenderComment(failed)
	for _, leak := range []string{"10.1.2.3", "http://10.", "hunter2", "Internal Server Error", "169.254", "AKIA"} {
		for _, r := range w.reportLog {
			assert.NotContains(t, gh.RenderComment(r.Report), leak)
		}
		for _, d := range w.statusDescs {
			assert.NotContains(t, d, leak, "deployment status")
		}
	}
	assert.Contains(t, body, "health check")
	assert.Contains(t, body, "wait for /healthz")
}
