package activities_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/testing/testenv"
)

var devServer *testsuite.DevServer

func TestMain(m *testing.M) { testenv.MainWithTemporal(m, &devServer) }

func startEmulator(t *testing.T, mod func(*emulator.Config)) (*emulator.Server, *dedalus.Client) {
	t.Helper()
	cfg := emulator.Config{
		Addr: "127.0.0.1:0", BootDelay: 100 * time.Millisecond, WakeDelay: 50 * time.Millisecond,
		SleepDelay: 20 * time.Millisecond, Seed: 7,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if mod != nil {
		mod(&cfg)
	}
	emu, err := emulator.New(cfg)
	require.NoError(t, err)
	require.NoError(t, emu.Start())
	t.Cleanup(func() { _ = emu.Close(context.Background()) })
	c, err := dedalus.New(dedalus.Options{BaseURL: emu.URL(), APIKey: emu.APIKey(), MinBackoff: 5 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	return emu, c
}

var machines *activities.Machines // method values name the activities in workflows

func actx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		HeartbeatTimeout:    2 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaximumInterval: time.Second, MaximumAttempts: 10},
	})
}

// tour exercises every machine activity once, as the preview workflow will.
func tour(ctx workflow.Context) (string, error) {
	ctx = actx(ctx)
	var m activities.MachineRef
	if err := workflow.ExecuteActivity(ctx, machines.CreateMachine, activities.MachineSpec{VCPU: 1, MemoryMiB: 512, StorageGiB: 5, Autosleep: "10m"}).Get(ctx, &m); err != nil {
		return "", err
	}
	var out activities.CommandResult
	if err := workflow.ExecuteActivity(ctx, machines.RunCommand, activities.Command{
		MachineID: m.MachineID, Name: "hello", Argv: []string{"sh", "-c", `echo "hello $WHO"`}, Env: map[string]string{"WHO": "drydock"},
		KeepOutput: true,
	}).Get(ctx, &out); err != nil {
		return "", err
	}
	var p activities.PreviewRef
	if err := workflow.ExecuteActivity(ctx, machines.CreatePreview, m.MachineID, int64(3000), "public").Get(ctx, &p); err != nil {
		return "", err
	}
	if err := workflow.ExecuteActivity(ctx, machines.SleepMachine, m.MachineID).Get(ctx, nil); err != nil {
		return "", err
	}
	if err := workflow.ExecuteActivity(ctx, machines.WakeMachine, m.MachineID).Get(ctx, nil); err != nil {
		return "", err
	}
	failed := workflow.ExecuteActivity(ctx, machines.RunCommand, activities.Command{
		MachineID: m.MachineID, Name: "build", Argv: []string{"sh", "-c", "echo compiling; echo 'error: boom' >&2; exit 2"},
	}).Get(ctx, nil)
	var ae *temporal.ApplicationError
	if !errors.As(failed, &ae) || ae.Type() != activities.ErrTypeCommandFailed {
		return "", fmt.Errorf("want a CommandFailed error, got %v", failed)
	}
	var failedRes activities.CommandResult
	if err := ae.Details(&failedRes); err != nil {
		return "", err
	}
	if err := workflow.ExecuteActivity(ctx, machines.DeletePreview, m.MachineID, p.PreviewID).Get(ctx, nil); err != nil {
		return "", err
	}
	if err := workflow.ExecuteActivity(ctx, machines.DeleteMachine, m.MachineID).Get(ctx, nil); err != nil {
		return "", err
	}
	// Deleting again (a retried teardown) is fine.
	if err := workflow.ExecuteActivity(ctx, machines.DeleteMachine, m.MachineID).Get(ctx, nil); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s|%s|%d|%s", m.MachineID, out.StdoutTail, failedRes.ExitCode, failedRes.StderrTail), nil
}

func runWorker(t *testing.T, queue string, c *dedalus.Client) worker.Worker {
	t.Helper()
	w := worker.New(devServer.Client(), queue, worker.Options{})
	w.RegisterWorkflow(tour)
	w.RegisterWorkflow(createOnly)
	w.RegisterActivity(&activities.Machines{Client: c, HeartbeatEvery: 200 * time.Millisecond})
	require.NoError(t, w.Start())
	return w
}

func TestMachineActivitiesThroughTemporal(t *testing.T) {
	emu, c := startEmulator(t, nil)
	queue := "tour-" + t.Name()
	w := runWorker(t, queue, c)
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := devServer.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "tour-1", TaskQueue: queue}, tour)
	require.NoError(t, err)
	var res string
	require.NoError(t, run.Get(ctx, &res))
	assert.Regexp(t, `^dm-\w+\|hello drydock\n\|2\|error: boom\n$`, res)

	st := emu.Stats()
	assert.EqualValues(t, 1, st.Creates)
	assert.EqualValues(t, 1, st.Sleeps)
	assert.EqualValues(t, 1, st.Wakes)
	assert.EqualValues(t, 1, st.Deletes)
	assert.Equal(t, 0, st.LiveMachines, "nothing leaked")
	assert.Equal(t, 0, st.PreviewsLive)
}

func createOnly(ctx workflow.Context) (activities.MachineRef, error) {
	var m activities.MachineRef
	err := workflow.ExecuteActivity(actx(ctx), machines.CreateMachine, activities.MachineSpec{VCPU: 1, MemoryMiB: 512, StorageGiB: 5}).Get(ctx, &m)
	return m, err
}

// A worker that dies while a machine boots leaves the activity to its
// successor, which finds the same machine through the idempotency key.
func TestCreateResumesOnAnotherWorkerWithoutDuplicate(t *testing.T) {
	emu, c := startEmulator(t, func(cfg *emulator.Config) { cfg.BootDelay = 1500 * time.Millisecond })
	queue := "resume-" + t.Name()
	first := runWorker(t, queue, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := devServer.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "resume-1", TaskQueue: queue}, createOnly)
	require.NoError(t, err)

	require.Eventually(t, func() bool { return emu.Stats().Creates == 1 }, 10*time.Second, 10*time.Millisecond)
	first.Stop() // the activity is mid-wait for "running"
	second := runWorker(t, queue, c)
	defer second.Stop()

	var m activities.MachineRef
	require.NoError(t, run.Get(ctx, &m))
	assert.Equal(t, dedalus.PhaseRunning, m.Phase)
	st := emu.Stats()
	assert.EqualValues(t, 1, st.Creates, "exactly one machine")
	assert.Equal(t, 1, st.LiveMachines)
	assert.GreaterOrEqual(t, st.IdempotentReplays, int64(1), "the retry replayed the original create")
}

// machinesEnv is an emulator and an activity environment running the
// Machines activities over it.
func machinesEnv(t *testing.T) (*emulator.Server, *testsuite.TestActivityEnvironment, *activities.Machines) {
	t.Helper()
	emu, c := startEmulator(t, nil)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	a := &activities.Machines{Client: c}
	env.RegisterActivity(a)
	return emu, env, a
}

// createMachine creates a machine through the CreateMachine activity.
func createMachine(t *testing.T, env *testsuite.TestActivityEnvironment, a *activities.Machines) activities.MachineRef {
	t.Helper()
	val, err := env.ExecuteActivity(a.CreateMachine, activities.MachineSpec{VCPU: 1, MemoryMiB: 512, StorageGiB: 5})
	require.NoError(t, err)
	var m activities.MachineRef
	require.NoError(t, val.Get(&m))
	return m
}

func TestErrorClassification(t *testing.T) {
	emu, env, a := machinesEnv(t)
	m := createMachine(t, env, a)

	nonRetryable := func(err error, typ string) {
		t.Helper()
		var ae *temporal.ApplicationError
		require.True(t, errors.As(err, &ae), "%v", err)
		assert.Equal(t, typ, ae.Type())
		assert.True(t, ae.NonRetryable(), "%s must not be retried", typ)
	}

	_, err := env.ExecuteActivity(a.CreateMachine, activities.MachineSpec{})
	nonRetryable(err, activities.ErrTypeInvalidArgument)

	_, err = env.ExecuteActivity(a.RunCommand, activities.Command{MachineID: m.MachineID, Argv: []string{"false"}})
	nonRetryable(err, activities.ErrTypeCommandFailed)

	// Overload is retryable, with the server's delay.
	require.NoError(t, emu.SetFaults(emulator.Faults{Routes: map[string]emulator.FaultRule{"getMachine": {Error503: 1}}}))
	_, err = env.ExecuteActivity(a.WakeMachine, m.MachineID)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.False(t, ae.NonRetryable())
	require.NoError(t, emu.SetFaults(emulator.Faults{}))

	_, err = env.ExecuteActivity(a.DeleteMachine, m.MachineID)
	require.NoError(t, err)
	_, err = env.ExecuteActivity(a.WakeMachine, m.MachineID)
	nonRetryable(err, activities.ErrTypeMachineFailed)
	_, err = env.ExecuteActivity(a.DeleteMachine, "dm-never-existed")
	assert.NoError(t, err, "a machine that does not exist counts as deleted")
	_, err = env.ExecuteActivity(a.RunCommand, activities.Command{MachineID: "dm-never-existed", Argv: []string{"true"}})
	nonRetryable(err, activities.ErrTypeNotFound)
}

// Awake accounting reads transitions from the activities' results: a wake
// and a delete say what the machine was before, each with its
// status.last_transition_at.
func TestMachineRefsCarryTransitions(t *testing.T) {
	emu, env, a := machinesEnv(t)
	do := func(fn any, id ...any) activities.MachineRef {
		t.Helper()
		val, err := env.ExecuteActivity(fn, id...)
		require.NoError(t, err)
		var m activities.MachineRef
		require.NoError(t, val.Get(&m))
		return m
	}

	created := do(a.CreateMachine, activities.MachineSpec{VCPU: 1, MemoryMiB: 512, StorageGiB: 5})
	assert.Equal(t, dedalus.PhaseRunning, created.Phase)
	assert.False(t, created.TransitionAt.IsZero())
	assert.Empty(t, created.WasPhase, "a create has no before")

	slept := do(a.SleepMachine, created.MachineID)
	assert.Equal(t, dedalus.PhaseSleeping, slept.Phase)
	assert.True(t, slept.TransitionAt.After(created.TransitionAt))

	woken := do(a.WakeMachine, created.MachineID)
	assert.Equal(t, dedalus.PhaseSleeping, woken.WasPhase)
	assert.True(t, woken.WasTransitionAt.Equal(slept.TransitionAt), "the wake tells when the machine fell asleep")
	assert.Equal(t, dedalus.PhaseRunning, woken.Phase)
	assert.True(t, woken.TransitionAt.After(slept.TransitionAt))

	wakes := emu.Stats().WakeRequests
	again := do(a.WakeMachine, created.MachineID)
	assert.Equal(t, wakes, emu.Stats().WakeRequests, "a running machine is not woken")
	assert.Equal(t, dedalus.PhaseRunning, again.WasPhase)
	assert.True(t, again.WasTransitionAt.Equal(woken.TransitionAt))
	assert.True(t, again.TransitionAt.Equal(woken.TransitionAt))

	deleted := do(a.DeleteMachine, created.MachineID)
	assert.Equal(t, dedalus.PhaseRunning, deleted.WasPhase)
	assert.True(t, deleted.WasTransitionAt.Equal(woken.TransitionAt))
	assert.Equal(t, dedalus.PhaseDestroyed, deleted.Phase)
	assert.True(t, deleted.TransitionAt.After(woken.TransitionAt))

	gone := do(a.DeleteMachine, created.MachineID)
	assert.Equal(t, dedalus.PhaseDestroyed, gone.Phase, "deleting again is fine")
	none := do(a.DeleteMachine, "dm-never-existed")
	assert.Equal(t, dedalus.PhaseDestroyed, none.Phase)
	assert.True(t, none.TransitionAt.IsZero())
}

// wakeRegularThenLocal wakes a machine with a regular activity, puts it to
// sleep, and wakes it again with a local activity (as PreviewLifecycle's wake
// Update does), after skip no-op local activities. The SDK numbers local
// activities 1, 2, ... with a counter of their own, and regular ones by their
// scheduled event: with skip 4 the local wake has the activity ID of the
// regular wake (its ActivityTaskScheduled is event 5).
func wakeRegularThenLocal(ctx workflow.Context, machineID string, skip int) (activities.MachineRef, error) {
	var m activities.MachineRef
	if err := workflow.ExecuteActivity(actx(ctx), machines.WakeMachine, machineID).Get(ctx, &m); err != nil {
		return m, err
	}
	if err := workflow.ExecuteActivity(actx(ctx), machines.SleepMachine, machineID).Get(ctx, &m); err != nil {
		return m, err
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 5 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaximumAttempts: 2},
	})
	for range skip {
		if err := workflow.ExecuteLocalActivity(lctx, func(context.Context) error { return nil }).Get(ctx, nil); err != nil {
			return m, err
		}
	}
	err := workflow.ExecuteLocalActivity(lctx, machines.WakeMachine, machineID).Get(ctx, &m)
	return m, err
}

// A local wake must not reuse the idempotency key of an earlier regular wake
// with the same activity ID: Dedalus would answer with the old wake and the
// machine would stay asleep until the local activity timed out.
func TestLocalWakeDoesNotReuseARegularWakesKey(t *testing.T) {
	emu, c := startEmulator(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := c.CreateMachine(ctx, dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 5}, "local-wake")
	require.NoError(t, err)
	_, err = c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseRunning)
	require.NoError(t, err)
	_, err = c.SleepAndWait(ctx, m.MachineID, "local-wake-sleep")
	require.NoError(t, err)

	queue := "local-wake-" + t.Name()
	tc := devServer.Client()
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflow(wakeRegularThenLocal)
	w.RegisterActivity(&activities.Machines{Client: c, HeartbeatEvery: 200 * time.Millisecond})
	require.NoError(t, w.Start())
	defer w.Stop()
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "local-wake-1", TaskQueue: queue}, wakeRegularThenLocal, m.MachineID, 4)
	require.NoError(t, err)
	var ref activities.MachineRef
	werr := run.Get(ctx, &ref)

	// The premise: the regular wake and the local wake share an activity ID.
	regular := ""
	it := tc.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == "WakeMachine" {
			regular = a.GetActivityId()
		}
	}
	require.Equal(t, "5", regular, "the regular wake's activity ID (the local wake is local activity 5)")

	require.NoError(t, werr)
	assert.Equal(t, dedalus.PhaseSleeping, ref.WasPhase)
	assert.Equal(t, dedalus.PhaseRunning, ref.Phase)
	assert.EqualValues(t, 2, emu.Stats().Wakes, "the local wake woke the machine")
}

// RunCommand's result goes into workflow history: a success carries its
// output only when the caller asks for it (KeepOutput); a failure always
// carries the tail of its output.
func TestRunCommandKeepsOutputForFailuresOnly(t *testing.T) {
	_, env, a := machinesEnv(t)
	m := createMachine(t, env, a)
	loud := []string{"sh", "-c", "echo built; echo warning >&2"}

	val, err := env.ExecuteActivity(a.RunCommand, activities.Command{MachineID: m.MachineID, Name: "build", Argv: loud})
	require.NoError(t, err)
	var res activities.CommandResult
	require.NoError(t, val.Get(&res))
	assert.True(t, res.Succeeded)
	assert.NotEmpty(t, res.ExecutionID)
	assert.Empty(t, res.StdoutTail, "a success's output stays out of history")
	assert.Empty(t, res.StderrTail)

	val, err = env.ExecuteActivity(a.RunCommand, activities.Command{MachineID: m.MachineID, Name: "app log", Argv: loud, KeepOutput: true})
	require.NoError(t, err)
	require.NoError(t, val.Get(&res))
	assert.Equal(t, "built\n", res.StdoutTail)
	assert.Equal(t, "warning\n", res.StderrTail)

	_, err = env.ExecuteActivity(a.RunCommand, activities.Command{MachineID: m.MachineID, Name: "test", Argv: []string{"sh", "-c", "echo ran; echo 'FAIL: x' >&2; exit 1"}})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, activities.ErrTypeCommandFailed, ae.Type())
	var failed activities.CommandResult
	require.NoError(t, ae.Details(&failed))
	assert.Equal(t, "ran\n", failed.StdoutTail)
	assert.Equal(t, "FAIL: x\n", failed.StderrTail)
}
