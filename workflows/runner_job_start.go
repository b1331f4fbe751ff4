package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// A RunnerJob's start on its leased machine: the wake, then the runner.

// startRunner wakes the leased machine and, in jit mode, starts the job's
// single-use runner on it. machineFault reports an error that condemns the
// machine (a failed wake; a failed runner start only when the machine
// failed it).
func (j *runnerJob) startRunner(ctx workflow.Context) (fault bool, err error) {
	j.setPhase(ctx, runnerapi.JobWaking)
	if !j.dispatched {
		// The workflow starts with the job's queued webhook: from then to
		// the wake of a machine for it is the dispatch latency.
		j.dispatched = true
		workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"pool": j.in.Pool}).Timer(MetricDispatchLatency).
			Record(workflow.Now(ctx).Sub(workflow.GetInfo(ctx).WorkflowStartTime))
	}
	woke, err := j.wake(ctx)
	if err != nil {
		return true, err
	}
	j.tellPoolWoke(ctx, woke)
	if j.settings.Mode == pools.ModeJIT {
		j.setPhase(ctx, runnerapi.JobStarting)
		in := activities.StartRunnerInput{Pool: j.in.Pool, MachineID: j.lease.MachineID, RunnerName: j.lease.RunnerName, JobID: j.in.Job.JobID, Repo: jobRepo(j.in.Job)}
		if j.v >= 1 {
			in.InstallationID = j.in.Job.InstallationID
		}
		if err := j.startJIT(ctx, in); err != nil {
			return j.v < 1 || machineFault(err), err
		}
	}
	j.runnerStartedAt = workflow.Now(ctx)
	j.setPhase(ctx, runnerapi.JobWaiting)
	return false, nil
}

// wake wakes the leased machine: a local activity on the fast path (in the
// same workflow task as the lease), with the ordinary activity's timeout
// and retries; the wake's idempotency key keeps a retried wake one wake.
func (j *runnerJob) wake(ctx workflow.Context) (activities.MachineRef, error) {
	var woke activities.MachineRef
	summary := "wake " + j.lease.MachineID
	if j.fast < 1 {
		err := workflow.ExecuteActivity(runnerActivity(ctx, summary, 2*time.Minute), machineActs.WakeMachine, j.lease.MachineID).Get(ctx, &woke)
		return woke, err
	}
	err := workflow.ExecuteLocalActivity(localRunnerActivity(ctx, summary, 2*time.Minute), machineActs.WakeMachine, j.lease.MachineID).Get(ctx, &woke)
	return woke, err
}

// startJIT starts the job's single-use runner on the woken machine: a
// local activity on the fast path (runnerJobLocalStartVersion), in the
// same workflow task as the wake, with the ordinary activity's timeout and
// retries (a retry finds the runner an earlier try started: see
// StartJITRunner). The JIT config never leaves the activity.
func (j *runnerJob) startJIT(ctx workflow.Context, in activities.StartRunnerInput) error {
	summary := "start runner " + j.lease.RunnerName
	if j.fast < 1 || j.localStart < 1 {
		return workflow.ExecuteActivity(runnerActivity(ctx, summary, 2*time.Minute), runnerActs.StartJITRunner, in).Get(ctx, nil)
	}
	return workflow.ExecuteLocalActivity(localRunnerActivity(ctx, summary, 2*time.Minute), runnerActs.StartJITRunner, in).Get(ctx, nil)
}

// localRunnerActivity is runnerActivity's timeout and retries for a local
// activity.
func localRunnerActivity(ctx workflow.Context, summary string, timeout time.Duration) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: timeout,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
	})
}

// tellPoolWoke sends the pool what the wake saw (the machine's phase before
// and after, with their transition times) for the pool's awake accounting.
// The signal is not waited for: the runner starts at once, and a pool that
// misses it only counts less precisely.
func (j *runnerJob) tellPoolWoke(ctx workflow.Context, woke activities.MachineRef) {
	if woke.Phase == "" {
		return // nothing observed
	}
	if workflow.GetVersion(ctx, "runner-job-wake-observed-by-pool", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	obs := runnerapi.MachineObserved{
		MachineID: j.lease.MachineID, WasPhase: woke.WasPhase, WasTransitionAt: woke.WasTransitionAt,
		Phase: woke.Phase, TransitionAt: woke.TransitionAt,
	}
	f := workflow.SignalExternalWorkflow(ctx, runnerapi.PoolWorkflowID(j.in.Pool), "", runnerapi.SignalMachineObserved, obs)
	workflow.Go(ctx, func(gctx workflow.Context) {
		if err := f.Get(gctx, nil); err != nil {
			workflow.GetLogger(gctx).Warn("pool not told about the wake", "pool", j.in.Pool, "machine", obs.MachineID, "error", err)
		}
	})
}
