package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// A RunnerJob attempt's lease: the acquire (fast path, then the ordinary
// activity), the job events meanwhile, and the withdrawal of a place the
// job no longer needs.

func (j *runnerJob) acquire(ctx workflow.Context, events workflow.ReceiveChannel, attempt int, exclude []string) error {
	// An earlier attempt's machine is not this one's: the status and the
	// search attributes show none until the lease (a reader that took the
	// old machine for the job's claim would miss the new one).
	j.st.MachineID, j.st.RunnerName = "", ""
	j.setPhase(ctx, runnerapi.JobAcquiring)
	opts := j.acquireOptions(attempt)
	actx, cancelAcquire := workflow.WithCancel(ctx)
	if j.v < 1 {
		actx = ctx
	}
	in := activities.AcquireInput{
		Pool: j.in.Pool, Request: runnerapi.AcquireRequest{JobID: j.in.Job.JobID, Attempt: attempt, Exclude: exclude,
			Repo: jobRepo(j.in.Job)},
	}
	acq := &acquisition{slow: func() workflow.Future {
		return workflow.ExecuteActivity(workflow.WithActivityOptions(actx, opts), runnerActs.AcquireRunner, in)
	}}
	if j.fast >= 1 {
		acq.fut, acq.now = acquireNow(actx, in), &activities.AcquireAnswer{}
	} else {
		acq.fut = acq.slow()
	}
	for {
		if done, err := j.awaitAcquire(ctx, events, acq); done {
			return j.leased(err)
		}
		if why := j.withdrawReason(); why != "" {
			cancelAcquire()
			j.withdraw(ctx, attempt, why)
			return errWithdrawn
		}
	}
}

// acquireOptions are the options of an attempt's acquire activity.
func (j *runnerJob) acquireOptions(attempt int) workflow.ActivityOptions {
	opts := workflow.ActivityOptions{
		Summary: fmt.Sprintf("acquire a %s machine (attempt %d)", j.in.Pool, attempt),
		// A saturated pool keeps the request queued: the wait is long and heartbeats.
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    20 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	}
	if j.v >= 1 {
		// A day in the queue at most, retries included.
		opts.ScheduleToCloseTimeout = 24 * time.Hour
		opts.RetryPolicy.MaximumAttempts = 100
		opts.RetryPolicy.NonRetryableErrorTypes = []string{runnerapi.ErrTypeInvalidAcquire, runnerapi.ErrTypeAcquireWithdrawn, activities.ErrTypeUnknownPool}
	}
	return opts
}

// awaitAcquire waits for the acquire's outcome or a job event; done
// reports the acquire's end (err: its failure).
func (j *runnerJob) awaitAcquire(ctx workflow.Context, events workflow.ReceiveChannel, acq *acquisition) (done bool, err error) {
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(acq.fut, func(f workflow.Future) { done, err = acq.settle(ctx, f, &j.lease) })
	sel.AddReceive(events, func(c workflow.ReceiveChannel, _ bool) {
		var ev runnerapi.WorkflowJobEvent
		c.Receive(ctx, &ev)
		j.onEvent(ctx, ev)
	})
	sel.Select(ctx)
	// The job may have run on another job's runner while this one
	// waits for a machine: free that runner's machine now, or the pool
	// can fill up with machines whose jobs are done.
	j.settleRanOn(ctx)
	return done, err
}

// leased takes the acquire's end: the lease is held, or err fails it.
func (j *runnerJob) leased(err error) error {
	if err != nil {
		return fmt.Errorf("acquire a machine from pool %s: %w", j.in.Pool, err)
	}
	j.holding = true
	j.st.MachineID = j.lease.MachineID
	j.st.RunnerName = j.lease.RunnerName
	return nil
}

// withdrawReason is why a waiting acquire's place goes now, or "".
func (j *runnerJob) withdrawReason() string {
	switch {
	case j.v >= 1 && j.cancelledUnrun():
		// Cancelled (or skipped) while queued: the place goes now, so
		// the pool neither keeps it nor provisions for it.
		return "job " + orNone(j.completed.Conclusion) + " before a machine was leased"
	case j.acct >= 1 && j.completed != nil && j.settings.Mode == pools.ModePersistent:
		// Persistent mode: it ran on another machine's runner, which
		// is free again and takes the next queued job itself: the
		// place goes now. (In jit mode it still starts a runner below:
		// the job whose single-use runner it took needs one.)
		return "job completed on " + orNone(j.completed.RunnerName) + " before a machine was leased"
	default:
		return ""
	}
}

// acquisition is one attempt's acquire: the fast path (while now is set),
// then the ordinary activity (slow).
type acquisition struct {
	fut  workflow.Future
	now  *activities.AcquireAnswer
	slow func() workflow.Future
}

// settle takes fut's outcome: done with the lease or an error, or not done
// when the fast path found no machine at once and the activity now waits
// for one (it re-attaches to a request the pool queued, and reports any
// refusal).
func (a *acquisition) settle(ctx workflow.Context, f workflow.Future, lease *runnerapi.Lease) (done bool, err error) {
	if a.now == nil {
		return true, f.Get(ctx, lease)
	}
	ans := a.now
	a.now = nil
	err = f.Get(ctx, ans)
	if temporal.IsCanceledError(err) {
		return true, err
	}
	if err != nil || ans.Queued {
		workflow.GetLogger(ctx).Debug("no machine at once; waiting in the pool's queue", "why", ans.Why, "error", err)
		a.fut = a.slow()
		return false, nil
	}
	*lease = ans.Lease
	return true, nil
}

// acquireNow starts the fast path's acquire (AcquireRunnerNow) as a local
// activity: one attempt, since the ordinary activity follows any failure.
func acquireNow(ctx workflow.Context, in activities.AcquireInput) workflow.Future {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: activities.AcquireNowWait + 5*time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
		Summary:             fmt.Sprintf("acquire a %s machine at once (attempt %d)", in.Pool, in.Request.Attempt),
	})
	return workflow.ExecuteLocalActivity(lctx, runnerActs.AcquireRunnerNow, in)
}
