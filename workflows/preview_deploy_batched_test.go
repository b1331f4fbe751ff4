package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/previewspec"
)

// A push to an open preview costs six activities (each an activity task
// and a workflow task on the server), where it cost eleven: GitHub is told
// of the deploy in one, the spec is validated locally, the checkout, build
// and start run in one.
func TestRedeployTakesSixActivities(t *testing.T) {
	env, _ := newTestEnv(t, defaultSettings)
	var pushed time.Time
	var onPush, localOnPush []string
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if !pushed.IsZero() {
			onPush = append(onPush, info.ActivityType.Name)
		}
	})
	env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) {
		if !pushed.IsZero() {
			localOnPush = append(localOnPush, info.ActivityType.Name)
		}
	})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		require.Equal(t, PreviewReady, status(t, env).Phase)
		pushed = env.Now()
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha2", "d2"))
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha2", st.DeployedSHA)
		pushed = time.Time{}
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"})
	}, 2*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"DeployReport", "FetchPreviewSpec", "WakeMachine", "RunCommands", "WaitHealthy", "DeployReport"}, onPush)
	assert.Contains(t, localOnPush, "LoadSpec")
}

// The setup runs once per machine even when the build after it fails: the
// first deploy's commands are cut after the setup, so its success is
// recorded before the build runs.
func TestSetupThatRanIsNotRepeatedAfterAFailedBuild(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.buildHook = func(_ context.Context, cmd activities.Command) (activities.CommandResult, error) {
		if cmd.Env["DRYDOCK_SHA"] == "bad" {
			return activities.CommandResult{ExitCode: 2}, temporal.NewNonRetryableApplicationError("exit 2", activities.ErrTypeCommandFailed, nil, activities.CommandResult{ExitCode: 2})
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "bad", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewFailed, status(t, env).Phase)
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "good", "d2"))
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewReady, status(t, env).Phase)
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"})
	}, 2*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout bad", "setup[0] tools", "build[0] compile",
		"checkout good", "build[0] compile", "seed[0] data", "start app"}, w.names())
	assert.Equal(t, "build[0] compile", w.reportLog[1].Report.FailedStep)
}

func groupNames(groups []commandGroup) [][]string {
	var out [][]string
	for _, g := range groups {
		var names []string
		for _, c := range g.cmds {
			names = append(names, c.Name)
		}
		out = append(out, names)
	}
	return out
}

func TestDeployGroups(t *testing.T) {
	ev := prEvent("opened", "0123456789abcdef", "d1")
	first := deployGroups(ev, testSpec, false, false)
	assert.Equal(t, [][]string{
		{"checkout 0123456", "setup[0] tools"},
		{"build[0] compile", "seed[0] data"},
		{"start app"},
	}, groupNames(first), "cut after the setup and after the seed")
	assert.True(t, first[0].setupIn)
	assert.False(t, first[0].seedIn)
	assert.True(t, first[1].seedIn)

	again := deployGroups(ev, testSpec, true, true)
	assert.Equal(t, [][]string{{"checkout 0123456", "build[0] compile", "start app"}}, groupNames(again), "a redeploy is one group")
	assert.Equal(t, 10*time.Minute, again[0].cmds[0].Timeout)
	assert.Equal(t, time.Minute, again[0].cmds[1].Timeout, "the step's own timeout")

	bare := testSpec
	bare.Setup, bare.Seed = nil, nil
	groups := deployGroups(ev, bare, false, false)
	assert.Equal(t, [][]string{{"checkout 0123456", "build[0] compile", "start app"}}, groupNames(groups), "no setup, no seed: nothing to cut for")
	assert.True(t, groups[0].setupIn)
	assert.True(t, groups[0].seedIn)
	assert.Equal(t, startArgv(previewspec.Step{Command: []string{"./app"}}), groups[0].cmds[2].Argv)
}

// A push whose deployment GitHub refused has none: its "success" must not
// go to the deployment of the push before it.
func TestRefusedDeploymentGetsNoStatusOfAnotherPush(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		require.Equal(t, []string{"success"}, w.statuses, "the first push's deployment succeeded")
		w.mu.Lock()
		w.deploymentFails = true
		w.mu.Unlock()
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha2", "d2"))
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase, "a refused deployment does not stop the deploy")
		assert.Equal(t, "sha2", st.DeployedSHA)
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"})
	}, 2*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"success"}, w.statuses[:1])
	assert.NotContains(t, w.statuses[1:], "success", "sha2's success did not go to sha1's deployment")
	assert.Equal(t, []string{"deploying", "ready", "deploying", "ready", "destroyed"}, w.reports)
}
