package workflows

import (
	"errors"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// What a RunnerJob gives back to its pool, and when.

// giveBack returns what a job that ends early (cancelled, or failed while
// acquiring) holds, from a disconnected context: its queue place is
// withdrawn, its lease released (its runner removed if it never took a job).
func (j *runnerJob) giveBack(ctx workflow.Context) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if j.holding {
		j.settleRanOn(dctx)
		why := "job workflow ended: " + orNone(string(j.st.Phase))
		if j.runnerStartedAt.IsZero() {
			// No runner of ours was started: nothing to remove (GitHub's
			// "not found" would read as a runner that ran a job).
			j.release(dctx, j.clean(j.own(why, false)))
			return
		}
		j.freeOwnRunner(dctx, why)
		return
	}
	if j.st.Phase == runnerapi.JobAcquiring {
		j.withdraw(dctx, j.st.Attempt, "job workflow ended while waiting for a machine")
	}
}

// backoff is base, 2*base, 4*base ... up to max, for the n-th failure.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// machineFault reports whether a runner start failed because of the
// machine (a command that failed or could not run, a machine that failed or
// is gone), which condemns it; anything else (GitHub errors, timeouts) is
// not the machine's fault.
func machineFault(err error) bool {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Type() {
	case activities.ErrTypeCommandFailed, activities.ErrTypeMachineFailed, activities.ErrTypeNotFound:
		return true
	}
	return false
}

// settleRanOn releases, once, the machine of the runner GitHub reports ran
// this job (whichever job leased it).
func (j *runnerJob) settleRanOn(ctx workflow.Context) {
	if j.settled || j.completed == nil {
		return
	}
	j.settled = true
	if ranOn := j.completed.RunnerName; strings.HasPrefix(ranOn, runnerapi.RunnerPrefix) {
		j.release(ctx, runnerapi.ReleaseRequest{RunnerName: ranOn, JobID: j.in.Job.JobID, Reason: "job completed", Repo: jobRepo(j.in.Job)})
	}
}

// freeOwnRunner handles this attempt's runner when it did not run this job:
// if it never took a job it is removed and its machine released; if it took
// another, that job's completion releases (or released) the machine.
func (j *runnerJob) freeOwnRunner(ctx workflow.Context, why string) {
	if j.settings.Mode == pools.ModeJIT {
		res, ok := j.removeOwnRunnerResult(ctx)
		if ok && (res.Busy || res.NotFound) {
			return
		}
		if ok {
			// Deregistered before it took a job: nothing ran on the machine.
			j.release(ctx, j.clean(j.own(why, false)))
			return
		}
	}
	// Persistent, or the removal failed (what ran on the machine is
	// unknown): a release naming this lease is ignored by the pool unless
	// the machine is still leased to it.
	j.release(ctx, j.own(why, false))
}

// removeOwnRunnerResult deregisters this attempt's JIT runner if it never
// took a job and says what GitHub answered; !ok when the call failed.
func (j *runnerJob) removeOwnRunnerResult(ctx workflow.Context) (res activities.RemoveRunnerResult, ok bool) {
	err := workflow.ExecuteActivity(runnerActivity(ctx, "remove runner "+j.lease.RunnerName, time.Minute), runnerActs.RemoveRunner,
		j.removeInput()).Get(ctx, &res)
	if err != nil {
		workflow.GetLogger(ctx).Warn("could not remove runner; releasing its machine anyway", "runner", j.lease.RunnerName, "error", err)
		return res, false
	}
	return res, true
}

// own is a release of this attempt's lease. It names both the machine and
// the runner, so the pool releases the machine only while it is still
// leased to this runner, never a machine re-leased to another job since.
func (j *runnerJob) own(why string, broken bool) runnerapi.ReleaseRequest {
	j.holding = false
	return runnerapi.ReleaseRequest{MachineID: j.lease.MachineID, RunnerName: j.lease.RunnerName, JobID: j.in.Job.JobID, Attempt: j.st.Attempt, Broken: broken, Reason: why}
}

// clean marks a release of a lease under which nothing ran on the machine.
func (j *runnerJob) clean(r runnerapi.ReleaseRequest) runnerapi.ReleaseRequest {
	r.Clean = true
	return r
}

// release signals the pool. The signal is delivered even if the pool is
// continuing as new; a missing pool is logged (nothing to release).
func (j *runnerJob) release(ctx workflow.Context, req runnerapi.ReleaseRequest) {
	if req.JobID == 0 {
		req.JobID = j.in.Job.JobID
	}
	err := workflow.SignalExternalWorkflow(ctx, runnerapi.PoolWorkflowID(j.in.Pool), "", runnerapi.SignalRelease, req).Get(ctx, nil)
	var ae *temporal.UnknownExternalWorkflowExecutionError
	if errors.As(err, &ae) {
		workflow.GetLogger(ctx).Warn("pool not running; nothing to release", "pool", j.in.Pool)
	} else if err != nil {
		workflow.GetLogger(ctx).Error("release failed", "pool", j.in.Pool, "error", err)
	}
}

// withdraw takes this job's request for an attempt back from the pool.
func (j *runnerJob) withdraw(ctx workflow.Context, attempt int, why string) {
	req := runnerapi.WithdrawRequest{JobID: j.in.Job.JobID, Attempt: attempt, Reason: why}
	err := workflow.SignalExternalWorkflow(ctx, runnerapi.PoolWorkflowID(j.in.Pool), "", runnerapi.SignalWithdraw, req).Get(ctx, nil)
	var ae *temporal.UnknownExternalWorkflowExecutionError
	if errors.As(err, &ae) {
		workflow.GetLogger(ctx).Warn("pool not running; nothing to withdraw", "pool", j.in.Pool)
	} else if err != nil {
		workflow.GetLogger(ctx).Error("withdraw failed", "pool", j.in.Pool, "error", err)
	}
}

func orNone(s string) string {
	if s == "" {
		return "no runner"
	}
	return s
}

// persistentRunner is the runner of the leased machine in persistent mode.
func (j *runnerJob) persistentRunner() string {
	if j.settings.Mode != pools.ModePersistent || j.lease.MachineID == "" {
		return ""
	}
	return runnerapi.PersistentRunnerName(j.in.Pool, j.lease.MachineID)
}

// tellPoolStarted tells the pool, once, that the job runs on another
// machine's persistent runner than the one it leased, so the pool keeps
// that busy machine leased (to this job) whatever the other job does.
func (j *runnerJob) tellPoolStarted(ctx workflow.Context, runner string) {
	if j.v < 1 || j.startedTold || j.settings.Mode != pools.ModePersistent ||
		!strings.HasPrefix(runner, runnerapi.RunnerPrefix) || runner == j.persistentRunner() {
		return
	}
	j.startedTold = true
	f := workflow.SignalExternalWorkflow(ctx, runnerapi.PoolWorkflowID(j.in.Pool), "", runnerapi.SignalRunnerStarted,
		runnerapi.RunnerStarted{JobID: j.in.Job.JobID, RunnerName: runner})
	workflow.Go(ctx, func(gctx workflow.Context) {
		if err := f.Get(gctx, nil); err != nil {
			workflow.GetLogger(gctx).Warn("pool not told which runner runs the job", "pool", j.in.Pool, "runner", runner, "error", err)
		}
	})
}

// removeInput names this attempt's runner, with the installation it was
// registered with.
func (j *runnerJob) removeInput() activities.RemoveRunnerInput {
	in := activities.RemoveRunnerInput{Pool: j.in.Pool, RunnerName: j.lease.RunnerName, Repo: jobRepo(j.in.Job)}
	if j.v >= 1 {
		in.InstallationID = j.in.Job.InstallationID
	}
	return in
}
