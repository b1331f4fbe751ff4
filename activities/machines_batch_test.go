package activities_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
)

// runBatch runs one RunCommands whose attempts time out after a second
// without a heartbeat, as when its worker dies.
func runBatch(ctx workflow.Context, in activities.CommandsInput) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		HeartbeatTimeout:    time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaximumInterval: 500 * time.Millisecond, MaximumAttempts: 30},
	})
	return workflow.ExecuteActivity(ctx, machines.RunCommands, in).Get(ctx, nil)
}

// shStep is a command that runs script with sh.
func shStep(name, script string) activities.Command {
	return activities.Command{Name: name, Argv: []string{"sh", "-c", script}}
}

// machineOn creates a machine on the emulator c talks to, through an
// activity environment that the test goes on using.
func machineOn(t *testing.T, c *dedalus.Client) (*testsuite.TestActivityEnvironment, *activities.Machines, activities.MachineRef) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	a := &activities.Machines{Client: c}
	env.RegisterActivity(a)
	return env, a, createMachine(t, env, a)
}

// stepsRun is what the commands appended to $HOME/steps on the machine.
func stepsRun(t *testing.T, env *testsuite.TestActivityEnvironment, a *activities.Machines, machineID string) string {
	t.Helper()
	val, err := env.ExecuteActivity(a.RunCommand, activities.Command{MachineID: machineID, Name: "read",
		Argv: []string{"sh", "-c", `cat "$HOME/steps"`}, KeepOutput: true})
	require.NoError(t, err)
	var res activities.CommandResult
	require.NoError(t, val.Get(&res))
	return res.StdoutTail
}

// RunCommands runs a deploy's commands in order, in one activity. When an
// attempt dies (here: its worker stops heartbeating while a command runs),
// the next attempts re-attach to the commands already run or running:
// each command runs once.
func TestRunCommandsRetriedRunsEachCommandOnce(t *testing.T) {
	emu, c := startEmulator(t, nil)
	queue := "batch-" + t.Name()
	// A worker that never heartbeats within the timeout: every attempt
	// that waits on a command for over a second is given up and retried.
	w := worker.New(devServer.Client(), queue, worker.Options{})
	w.RegisterWorkflow(runBatch)
	w.RegisterActivity(&activities.Machines{Client: c, HeartbeatEvery: time.Hour})
	require.NoError(t, w.Start())
	defer w.Stop()

	env, a, m := machineOn(t, c)
	in := activities.CommandsInput{MachineID: m.MachineID, Env: map[string]string{"WHO": "drydock"}, Commands: []activities.Command{
		shStep("checkout", `echo "checkout $WHO" >> "$HOME/steps"`),
		shStep("build", `sleep 3; echo "build $WHO" >> "$HOME/steps"`),
		shStep("start", `echo "start $WHO" >> "$HOME/steps"`),
	}}
	before := emu.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := devServer.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "batch-1", TaskQueue: queue}, runBatch, in)
	require.NoError(t, err)
	require.NoError(t, run.Get(ctx, nil))

	after := emu.Stats()
	assert.Equal(t, before.Executions+3, after.Executions, "three commands, each run once")
	assert.Greater(t, after.IdempotentReplays, before.IdempotentReplays, "the retries re-attached")
	assert.Equal(t, "checkout drydock\nbuild drydock\nstart drydock\n", stepsRun(t, env, a, m.MachineID), "in order, once each, with the input's environment")
}

// A failed command stops the batch: what follows does not run, and the
// error names the command (the PR's failed step).
func TestRunCommandsStopsAtTheFirstFailure(t *testing.T) {
	_, env, a := machinesEnv(t)
	m := createMachine(t, env, a)
	_, err := env.ExecuteActivity(a.RunCommands, activities.CommandsInput{MachineID: m.MachineID, Commands: []activities.Command{
		shStep("checkout", `echo checkout >> "$HOME/steps"`),
		shStep("build[0] compile", `echo 'error: boom' >&2; exit 3`),
		shStep("start app", `echo start >> "$HOME/steps"`),
	}})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.Equal(t, activities.ErrTypeCommandFailed, ae.Type())
	assert.True(t, ae.NonRetryable())
	var res activities.CommandResult
	require.NoError(t, ae.Details(&res))
	assert.Equal(t, "build[0] compile", res.Name)
	assert.EqualValues(t, 3, res.ExitCode)
	assert.Equal(t, "error: boom\n", res.StderrTail)

	assert.Equal(t, "checkout\n", stepsRun(t, env, a, m.MachineID), "the start after the failed build never ran")
}

// Bad input gets a clear error and runs nothing.
func TestRunCommandsRefusesBadInput(t *testing.T) {
	emu, env, a := machinesEnv(t)
	m := createMachine(t, env, a)
	before := emu.Stats().Executions
	for name, in := range map[string]activities.CommandsInput{
		"no machine":  {Commands: []activities.Command{{Name: "x", Argv: []string{"true"}}}},
		"no commands": {MachineID: m.MachineID},
		"empty argv":  {MachineID: m.MachineID, Commands: []activities.Command{{Name: "ok", Argv: []string{"true"}}, {Name: "bad"}}},
	} {
		_, err := env.ExecuteActivity(a.RunCommands, in)
		var ae *temporal.ApplicationError
		require.True(t, errors.As(err, &ae), "%s: %v", name, err)
		assert.Equal(t, activities.ErrTypeInvalidArgument, ae.Type(), name)
		assert.True(t, ae.NonRetryable(), name)
	}
	assert.Equal(t, before, emu.Stats().Executions, "nothing ran")
}

// A worker that stops while a deploy's build runs, its stop timeout shorter
// than the build (a rolling restart), leaves the command running: the next
// worker's attempt re-attaches to it and the deploy goes on. A command
// deleted on the way out would fail the deploy with a step that never failed.
func TestRunCommandsOutliveAWorkerStop(t *testing.T) {
	emu, c := startEmulator(t, nil)
	queue := "stop-" + t.Name()
	newWorker := func() worker.Worker {
		w := worker.New(devServer.Client(), queue, worker.Options{WorkerStopTimeout: 200 * time.Millisecond})
		w.RegisterWorkflow(runBatch)
		w.RegisterActivity(&activities.Machines{Client: c, HeartbeatEvery: 200 * time.Millisecond})
		require.NoError(t, w.Start())
		return w
	}
	env, a, m := machineOn(t, c)
	in := activities.CommandsInput{MachineID: m.MachineID, Commands: []activities.Command{
		shStep("build", `sleep 3; echo built >> "$HOME/steps"`),
		shStep("start", `echo started >> "$HOME/steps"`),
	}}

	first := newWorker()
	before := emu.Stats().Executions
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := devServer.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "stop-1", TaskQueue: queue}, runBatch, in)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return emu.Stats().Executions == before+1 }, 10*time.Second, 10*time.Millisecond, "the build started")
	first.Stop() // the build has seconds to go
	second := newWorker()
	defer second.Stop()

	require.NoError(t, run.Get(ctx, nil), "the deploy's commands succeed")
	assert.Equal(t, before+2, emu.Stats().Executions, "the build ran once, then the start")
	assert.Equal(t, "built\nstarted\n", stepsRun(t, env, a, m.MachineID))
}
