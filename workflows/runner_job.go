package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// How often a job that is running is checked with GitHub, in case its
// completed webhook is lost (its machine would otherwise stay leased).
const jobRecheckEvery = 15 * time.Minute

// runnerJob is one RunnerJob run's state.
type runnerJob struct {
	in       runnerapi.RunnerJobInput
	settings activities.PoolSettings
	st       runnerapi.RunnerJobStatus
	lease    runnerapi.Lease
	// completed is the job's completed event, once seen.
	completed *runnerapi.WorkflowJobEvent
	// settled: the machine of the runner that ran the job was released.
	settled         bool
	runnerStartedAt time.Time
	seen            []string // delivery IDs
	// dispatched: the dispatch latency was recorded (at the first wake).
	dispatched bool
	// v is the job's code version (runnerJobVersion): runs started before
	// it keep their command sequence.
	v workflow.Version
	// holding: this attempt's lease was received and not given back yet.
	holding bool
	// startedTold: the pool was told which runner runs the job (persistent mode).
	startedTold bool
	// acct is the job's persistent-mode accounting version
	// (runnerJobAccountingVersion).
	acct workflow.Version
	// gone is the version of the JIT gone-runner rule (runnerJobGoneRunnerVersion).
	gone workflow.Version
	// fast is the version of the dispatch in the first workflow task
	// (runnerJobFastDispatchVersion).
	fast workflow.Version
	// localStart is the version of the runner start as a local activity
	// (runnerJobLocalStartVersion).
	localStart workflow.Version
}

// runnerJobVersion guards the changes of issue 12 in RunnerJob: withdraw a
// request on cancellation or completion, release on cancellation, GitHub
// faults do not condemn a machine, bounded acquire, installation ID.
const runnerJobVersion = "runner-job-issue-12"

// runnerJobAccountingVersion guards, in persistent mode, the withdrawal of
// a job's queue place when it completes on another machine's runner while
// it waits for a machine (a persistent runner runs job after job: no
// machine needs waking for the job whose runner it took).
const runnerJobAccountingVersion = "runner-job-persistent-accounting"

// runnerJobGoneRunnerVersion guards, in JIT mode, a new attempt for a job
// still queued when its own runner is gone (it ran another job and
// deregistered, or it was removed): no runner is sure to come for it then,
// and waiting on would starve it (found by make chaos).
const runnerJobGoneRunnerVersion = "runner-job-replace-gone-runner"

// runnerJobFastDispatchVersion guards the dispatch's fast path: the acquire
// is tried first as a local activity (AcquireRunnerNow), and the wake runs
// as a local activity, so a pool with a machine to hand has it waking
// within the job's first workflow task, with no activity task (two
// matching round trips and their history writes) in between.
const runnerJobFastDispatchVersion = "runner-job-fast-dispatch"

// runnerJobLocalStartVersion guards the JIT runner's start as a local
// activity right after the wake (with the fast dispatch): the machine is
// awake from the wake on, and an activity task in between (a history write
// and a matching round trip, longer on a loaded worker) was awake time
// spent waiting, on every job.
const runnerJobLocalStartVersion = "runner-job-local-start"

// errWithdrawn: the job completed before it got a machine; its request was
// withdrawn.
var errWithdrawn = errors.New("job completed before a machine was leased: request withdrawn")

// GitHub faults while starting a runner: the machine is returned (not
// condemned) and the next attempt waits 30s, 1m, 2m ... 5m.
const (
	githubBackoffBase = 30 * time.Second
	githubBackoffMax  = 5 * time.Minute
)

// RunnerJob runs one GitHub Actions job on a pool machine: lease a machine,
// wake it, start a single-use runner, and see the job through. Accounting
// follows GitHub, not the lease: GitHub may hand the runner this job woke a
// different queued job with the same labels, so a completed job releases the
// machine of the runner that ran it, and a runner left without a job is
// removed and its machine released.
func RunnerJob(ctx workflow.Context, in runnerapi.RunnerJobInput) error {
	j := &runnerJob{in: in}
	j.v = workflow.GetVersion(ctx, runnerJobVersion, workflow.DefaultVersion, 1)
	j.acct = workflow.GetVersion(ctx, runnerJobAccountingVersion, workflow.DefaultVersion, 1)
	j.gone = workflow.GetVersion(ctx, runnerJobGoneRunnerVersion, workflow.DefaultVersion, 1)
	j.fast = workflow.GetVersion(ctx, runnerJobFastDispatchVersion, workflow.DefaultVersion, 1)
	j.localStart = workflow.GetVersion(ctx, runnerJobLocalStartVersion, workflow.DefaultVersion, 1)
	j.st = runnerapi.RunnerJobStatus{Phase: runnerapi.JobAcquiring, Pool: in.Pool, JobID: in.Job.JobID, QueuedAt: in.Job.CreatedAt}
	if j.st.QueuedAt.IsZero() {
		j.st.QueuedAt = workflow.Now(ctx)
	}
	if err := workflow.SetQueryHandler(ctx, runnerapi.QueryJobStatus, func() (runnerapi.RunnerJobStatus, error) { return j.st, nil }); err != nil {
		return err
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, SearchAttrPool.ValueSet(in.Pool), SearchAttrJobID.ValueSet(in.Job.JobID),
		SearchAttrRepo.ValueSet(RepoKey(in.Job.Owner, in.Job.Repo)), SearchAttrPhase.ValueSet(string(j.st.Phase)))

	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	if err := workflow.ExecuteLocalActivity(lctx, runnerActs.PoolSettings, in.Pool).Get(ctx, &j.settings); err != nil {
		return fmt.Errorf("pool %s: %w", in.Pool, err)
	}
	events := workflow.GetSignalChannel(ctx, runnerapi.SignalJobEvent)
	err := j.run(ctx, events)
	if j.v >= 1 && (ctx.Err() != nil || (err != nil && j.st.Phase == runnerapi.JobAcquiring)) {
		j.giveBack(ctx)
	}
	return err
}

// run leases machines until one runs the job (or the attempts run out).
func (j *runnerJob) run(ctx workflow.Context, events workflow.ReceiveChannel) error {
	var exclude []string
	githubFaults := 0
	for attempt := 1; ; attempt++ {
		j.st.Attempt = attempt
		if attempt > j.settings.MaxAttempts {
			j.setPhase(ctx, runnerapi.JobAbandoned)
			return fmt.Errorf("job %d: no machine picked it up after %d attempts", j.in.Job.JobID, j.settings.MaxAttempts)
		}
		err := j.acquire(ctx, events, attempt, exclude)
		if errors.Is(err, errWithdrawn) {
			return j.finish(ctx)
		}
		if err != nil {
			return err
		}
		if j.completed != nil && j.completed.RunnerName == "" {
			// Cancelled before any runner took it: no runner is owed.
			j.release(ctx, j.clean(j.own("job cancelled before its runner started", false)))
			j.lease = runnerapi.Lease{} // returned: no runner of ours to settle
			return j.finish(ctx)
		}
		// A job that already ran on another job's runner still starts one:
		// every queued job wakes one machine, so the job whose runner it
		// took gets a runner in turn.
		if fault, err := j.startRunner(ctx); err != nil {
			if j.v >= 1 && ctx.Err() != nil {
				return ctx.Err()
			}
			if fault {
				workflow.GetLogger(ctx).Warn("machine unusable; trying another", "machine", j.lease.MachineID, "error", err)
				j.release(ctx, j.own(err.Error(), true))
				exclude = append(exclude, j.lease.MachineID)
				continue
			}
			githubFaults++
			if err := j.backOff(ctx, err, githubFaults); err != nil {
				return err
			}
			continue
		}
		if j.completed != nil {
			return j.finish(ctx)
		}
		retry, err := j.await(ctx, events)
		if err != nil {
			return err
		}
		if !retry {
			return j.finish(ctx)
		}
		exclude = append(exclude, j.lease.MachineID)
	}
}

func (j *runnerJob) setPhase(ctx workflow.Context, p runnerapi.RunnerJobPhase) {
	j.st.Phase = p
	_ = workflow.UpsertTypedSearchAttributes(ctx, SearchAttrPhase.ValueSet(string(p)), SearchAttrMachineID.ValueSet(j.st.MachineID))
}

// onEvent folds a workflow_job event into the state.
func (j *runnerJob) onEvent(ctx workflow.Context, ev runnerapi.WorkflowJobEvent) {
	if ev.DeliveryID != "" {
		if slices.Contains(j.seen, ev.DeliveryID) {
			return
		}
		j.seen = append(j.seen, ev.DeliveryID)
	}
	switch ev.Action {
	case "in_progress":
		if j.st.PickedUpAt.IsZero() {
			j.st.PickedUpAt = workflow.Now(ctx)
			created := ev.CreatedAt
			if created.IsZero() {
				created = j.in.Job.CreatedAt
			}
			if !created.IsZero() && !ev.StartedAt.IsZero() && !ev.StartedAt.Before(created) {
				workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"pool": j.in.Pool}).Timer(MetricJobQueue).
					Record(ev.StartedAt.Sub(created))
			}
		}
		j.st.RanOn = ev.RunnerName
		if j.completed == nil {
			j.setPhase(ctx, runnerapi.JobRunning)
		}
		j.tellPoolStarted(ctx, ev.RunnerName)
	case "completed":
		if j.completed == nil {
			e := ev
			j.completed = &e
			j.st.Conclusion = ev.Conclusion
			if ev.RunnerName != "" {
				j.st.RanOn = ev.RunnerName
			}
		}
	}
}

func (j *runnerJob) acquire(ctx workflow.Context, events workflow.ReceiveChannel, attempt int, exclude []string) error {
	j.setPhase(ctx, runnerapi.JobAcquiring)
	opts := workflow.ActivityOptions{
		Summary: fmt.Sprintf("acquire a %s machine (attempt %d)", j.in.Pool, attempt),
		// A saturated pool keeps the request queued: the wait is long and heartbeats.
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    20 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	}
	actx, cancelAcquire := workflow.WithCancel(ctx)
	if j.v >= 1 {
		// A day in the queue at most, retries included.
		opts.ScheduleToCloseTimeout = 24 * time.Hour
		opts.RetryPolicy.MaximumAttempts = 100
		opts.RetryPolicy.NonRetryableErrorTypes = []string{runnerapi.ErrTypeInvalidAcquire, runnerapi.ErrTypeAcquireWithdrawn, activities.ErrTypeUnknownPool}
	} else {
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
		sel := workflow.NewSelector(ctx)
		var err error
		done := false
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
		if done {
			if err != nil {
				return fmt.Errorf("acquire a machine from pool %s: %w", j.in.Pool, err)
			}
			j.holding = true
			j.st.MachineID = j.lease.MachineID
			j.st.RunnerName = j.lease.RunnerName
			return nil
		}
		if j.v >= 1 && j.completed != nil && j.completed.RunnerName == "" {
			// Cancelled (or skipped) while queued: the place goes now, so
			// the pool neither keeps it nor provisions for it.
			cancelAcquire()
			j.withdraw(ctx, attempt, "job "+orNone(j.completed.Conclusion)+" before a machine was leased")
			return errWithdrawn
		}
		if j.acct >= 1 && j.completed != nil && j.settings.Mode == pools.ModePersistent {
			// Persistent mode: it ran on another machine's runner, which
			// is free again and takes the next queued job itself: the
			// place goes now. (In jit mode it still starts a runner below:
			// the job whose single-use runner it took needs one.)
			cancelAcquire()
			j.withdraw(ctx, attempt, "job completed on "+orNone(j.completed.RunnerName)+" before a machine was leased")
			return errWithdrawn
		}
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

func runnerActivity(ctx workflow.Context, summary string, timeout time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
	})
}

// await waits for the job to be picked up and completed. It returns
// retry=true when the job was not picked up in time and is still queued:
// this attempt's machine is released and another tried.
func (j *runnerJob) await(ctx workflow.Context, events workflow.ReceiveChannel) (retry bool, err error) {
	for j.completed == nil {
		wait := j.settings.PickupTimeout
		if !j.st.PickedUpAt.IsZero() {
			wait = jobRecheckEvery
		}
		tctx, cancel := workflow.WithCancel(ctx)
		timer := workflow.NewTimerWithOptions(tctx, wait, workflow.TimerOptions{Summary: "check the job with GitHub"})
		fired := false
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(events, func(c workflow.ReceiveChannel, _ bool) {
			var ev runnerapi.WorkflowJobEvent
			c.Receive(ctx, &ev)
			j.onEvent(ctx, ev)
		})
		sel.AddFuture(timer, func(workflow.Future) { fired = true })
		sel.Select(ctx)
		cancel()
		if ctx.Err() != nil {
			// Cancelled: the timer and any activity would resolve at once.
			return false, ctx.Err()
		}
		if !fired || j.completed != nil {
			continue
		}
		var gs activities.JobStatusResult
		if err := workflow.ExecuteActivity(runnerActivity(ctx, "ask GitHub about the job", time.Minute), runnerActs.JobStatus,
			activities.JobStatusInput{Owner: j.in.Job.Owner, Repo: j.in.Job.Repo, JobID: j.in.Job.JobID, InstallationID: j.in.Job.InstallationID},
		).Get(ctx, &gs); err != nil {
			workflow.GetLogger(ctx).Warn("job status unavailable; waiting on", "error", err)
			continue
		}
		switch gs.Status {
		case "completed":
			j.onEvent(ctx, runnerapi.WorkflowJobEvent{Action: "completed", JobID: j.in.Job.JobID, RunnerName: gs.RunnerName, Conclusion: gs.Conclusion})
		case "in_progress":
			j.onEvent(ctx, runnerapi.WorkflowJobEvent{Action: "in_progress", JobID: j.in.Job.JobID, RunnerName: gs.RunnerName})
		default: // queued, waiting: not picked up yet
			if !j.st.PickedUpAt.IsZero() {
				continue
			}
			removed := false // our runner deregistered before it took a job
			if j.settings.Mode == pools.ModeJIT {
				res, ok := j.removeOwnRunnerResult(ctx)
				removed = ok && !res.Busy && !res.NotFound
				if ok && (res.Busy || (res.NotFound && j.gone < 1)) {
					// Our runner is running another queued job: that job's
					// own runner may come for ours, and ours is gone only
					// after its job (checked again next time).
					continue
				}
				if ok && res.NotFound {
					workflow.GetLogger(ctx).Warn("job still queued and its runner is gone; starting another runner", "runner", j.lease.RunnerName)
				}
			}
			workflow.GetLogger(ctx).Warn("job not picked up in time; trying another machine", "machine", j.lease.MachineID, "status", gs.Status)
			rel := j.own("job not picked up within "+j.settings.PickupTimeout.String(), false)
			if j.settings.Mode == pools.ModeJIT && removed {
				rel = j.clean(rel)
			}
			j.release(ctx, rel)
			return true, nil
		}
	}
	return false, nil
}

// finish settles the accounting once the job completed: the machine of the
// runner that ran it is released, and this job's own runner, if it never
// ran anything, is removed and its machine released.
func (j *runnerJob) finish(ctx workflow.Context) error {
	ranOn := ""
	if j.completed != nil {
		ranOn = j.completed.RunnerName
	}
	j.settleRanOn(ctx)
	if j.lease.MachineID != "" && ranOn != j.lease.RunnerName && !(j.v >= 1 && ranOn == j.persistentRunner()) {
		// Our runner may be about to take the job whose runner ran ours:
		// give it the pickup window before deciding it is not needed.
		if !j.runnerStartedAt.IsZero() {
			if wait := j.runnerStartedAt.Add(j.settings.PickupTimeout).Sub(workflow.Now(ctx)); wait > 0 {
				_ = workflow.NewTimerWithOptions(ctx, wait, workflow.TimerOptions{Summary: "let the runner take a queued job"}).Get(ctx, nil)
			}
		}
		j.freeOwnRunner(ctx, "job ran on "+orNone(ranOn))
	}
	j.st.DoneAt = workflow.Now(ctx)
	if j.st.PickedUpAt.IsZero() && ranOn == "" {
		j.setPhase(ctx, runnerapi.JobAbandoned)
	} else {
		j.setPhase(ctx, runnerapi.JobCompleted)
	}
	return nil
}

// backOff returns a machine whose runner did not start for another reason
// than the machine (GitHub, another dependency) as it is, and waits a
// little before the next attempt: the n-th such failure waits longer.
func (j *runnerJob) backOff(ctx workflow.Context, err error, n int) error {
	workflow.GetLogger(ctx).Warn("runner not started (not a machine fault); returning the machine and backing off", "machine", j.lease.MachineID, "error", err)
	j.release(ctx, j.own("runner not started: "+err.Error(), false))
	wait := backoff(githubBackoffBase, githubBackoffMax, n)
	return workflow.NewTimerWithOptions(ctx, wait, workflow.TimerOptions{Summary: "back off after a GitHub fault"}).Get(ctx, nil)
}

// jobRepo is a job's repository as the pool's isolation keys it (owner/name
// in lower case), or "" if the event names none.
func jobRepo(e runnerapi.WorkflowJobEvent) string {
	if e.Owner == "" || e.Repo == "" {
		return ""
	}
	return RepoKey(e.Owner, e.Repo)
}
