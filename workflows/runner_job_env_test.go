package workflows

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

const jobTestPool = "linux"

var jobEpoch = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// jobWorld records what a RunnerJob asked of its activities and its pool.
type jobWorld struct {
	mu        sync.Mutex
	acquires  []runnerapi.AcquireRequest
	wakes     []string
	started   []string // runner names
	removed   []string
	releases  []runnerapi.ReleaseRequest
	withdraws []runnerapi.WithdrawRequest
	// startFails, if set, is the error of the n-th StartJITRunner call (nil: it starts).
	startFails   func(n int) error
	wakeFails    map[string]bool
	remove       activities.RemoveRunnerResult
	github       activities.JobStatusResult
	acquireIn    time.Duration // how long acquiring takes
	observed     []runnerapi.MachineObserved
	startInputs  []activities.StartRunnerInput
	metrics      *metricsCapture
	mode         string        // the pool's mode (default jit)
	wakeIn       time.Duration // how long a wake takes
	removeInputs []activities.RemoveRunnerInput
	started2     []runnerapi.RunnerStarted
	// acquireNow answers the fast path (AcquireRunnerNow); nil: queued,
	// so the ordinary activity (acquires) leases.
	acquireNow  func(in activities.AcquireInput) (activities.AcquireAnswer, error)
	nowAcquires []runnerapi.AcquireRequest
}

func newJobEnv(t *testing.T, w *jobWorld) *testsuite.TestWorkflowEnvironment {
	env := newWorkflowEnv(w.metrics)
	env.RegisterWorkflowWithOptions(RunnerJob, workflow.RegisterOptions{Name: runnerapi.RunnerJobName})
	env.RegisterActivity(&activities.Machines{})
	env.RegisterActivity(&activities.Runners{})
	mode := w.mode
	if mode == "" {
		mode = pools.ModeJIT
	}
	env.OnActivity(runnerActs.PoolSettings, mock.Anything, mock.Anything).Return(
		activities.PoolSettings{Mode: mode, PickupTimeout: 2 * time.Minute, MaxAttempts: 3}, nil)
	recordPoolSignal(env, w, runnerapi.SignalRunnerStarted, &w.started2)
	w.mockAcquire(env)
	w.mockMachineAndRunner(env)
	recordPoolSignal(env, w, runnerapi.SignalRelease, &w.releases)
	recordPoolSignal(env, w, runnerapi.SignalWithdraw, &w.withdraws)
	recordPoolSignal(env, w, runnerapi.SignalMachineObserved, &w.observed)
	return env
}

// mockAcquire mocks the pool's acquires: the fast path (AcquireRunnerNow)
// and the ordinary activity, which leases machine m<attempt>.
func (w *jobWorld) mockAcquire(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(runnerActs.AcquireRunnerNow, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.AcquireInput) (activities.AcquireAnswer, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.nowAcquires = append(w.nowAcquires, in.Request)
			if w.acquireNow == nil {
				return activities.AcquireAnswer{Queued: true, Why: "no machine at once"}, nil
			}
			return w.acquireNow(in)
		})
	acquire := env.OnActivity(runnerActs.AcquireRunner, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.AcquireInput) (runnerapi.Lease, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.acquires = append(w.acquires, in.Request)
			n := in.Request.Attempt
			return runnerapi.Lease{MachineID: "m" + string(rune('0'+n)), RunnerName: runnerapi.RunnerName(jobTestPool, in.Request.JobID, n)}, nil
		})
	if w.acquireIn > 0 {
		acquire.After(w.acquireIn)
	}
}

// mockMachineAndRunner mocks the wake, the JIT runner's start and removal,
// and GitHub's answer about the job.
func (w *jobWorld) mockMachineAndRunner(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(machineActs.WakeMachine, mock.Anything, mock.Anything).After(w.wakeIn).Return(
		func(_ context.Context, id string) (activities.MachineRef, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.wakes = append(w.wakes, id)
			if w.wakeFails[id] {
				return activities.MachineRef{}, temporal.NewNonRetryableApplicationError("restore failed", activities.ErrTypeMachineFailed, nil)
			}
			// Asleep since an hour before the test began; running from now.
			return activities.MachineRef{MachineID: id, WasPhase: dedalus.PhaseSleeping, WasTransitionAt: jobEpoch,
				Phase: dedalus.PhaseRunning, TransitionAt: env.Now()}, nil
		})
	env.OnActivity(runnerActs.StartJITRunner, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.StartRunnerInput) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.started = append(w.started, in.RunnerName)
			w.startInputs = append(w.startInputs, in)
			if w.startFails != nil {
				return w.startFails(len(w.started))
			}
			return nil
		})
	env.OnActivity(runnerActs.RemoveRunner, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RemoveRunnerInput) (activities.RemoveRunnerResult, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.removed = append(w.removed, in.RunnerName)
			w.removeInputs = append(w.removeInputs, in)
			return w.remove, nil
		})
	env.OnActivity(runnerActs.JobStatus, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.JobStatusInput) (activities.JobStatusResult, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.github, nil
		})
}

// recordPoolSignal mocks the job's signal name to its pool: each one's
// argument is appended to *into.
func recordPoolSignal[T any](env *testsuite.TestWorkflowEnvironment, w *jobWorld, name string, into *[]T) {
	env.OnSignalExternalWorkflow(mock.Anything, runnerapi.PoolWorkflowID(jobTestPool), "", name, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			*into = append(*into, arg.(T))
			return nil
		})
}

func jobInput(id int64) runnerapi.RunnerJobInput {
	return runnerapi.RunnerJobInput{Pool: jobTestPool, Job: runnerapi.WorkflowJobEvent{
		Action: "queued", JobID: id, Owner: "octo", Repo: "app", Labels: []string{"self-hosted", "linux"},
	}}
}

func jobEvent(action string, id int64, runner, delivery string) runnerapi.WorkflowJobEvent {
	return runnerapi.WorkflowJobEvent{DeliveryID: delivery, Action: action, JobID: id, RunnerName: runner, Conclusion: map[string]string{"completed": "success"}[action]}
}

func jobStatus(t *testing.T, env *testsuite.TestWorkflowEnvironment) runnerapi.RunnerJobStatus {
	t.Helper()
	v, err := env.QueryWorkflow(runnerapi.QueryJobStatus)
	require.NoError(t, err)
	var st runnerapi.RunnerJobStatus
	require.NoError(t, v.Get(&st))
	return st
}
