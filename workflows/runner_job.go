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
		if j.cancelledUnrun() {
			// Cancelled before any runner took it: no runner is owed.
			j.release(ctx, j.clean(j.own("job cancelled before its runner started", false)))
			j.lease = runnerapi.Lease{} // returned: no runner of ours to settle
			return j.finish(ctx)
		}
		// A job that already ran on another job's runner still starts one:
		// every queued job wakes one machine, so the job whose runner it
		// took gets a runner in turn.
		if fault, err := j.startRunner(ctx); err != nil {
			if err := j.startFailed(ctx, err, fault, &exclude, &githubFaults); err != nil {
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

// cancelledUnrun: the job completed (cancelled or skipped) before any
// runner took it.
func (j *runnerJob) cancelledUnrun() bool {
	return j.completed != nil && j.completed.RunnerName == ""
}

// startFailed handles a runner that did not start: a machine fault returns
// the machine broken and excludes it from the next attempt; another fault
// returns it as it is and backs off (githubFaults counts them). A non-nil
// error ends the job.
func (j *runnerJob) startFailed(ctx workflow.Context, err error, fault bool, exclude *[]string, githubFaults *int) error {
	if j.v >= 1 && ctx.Err() != nil {
		return ctx.Err()
	}
	if fault {
		workflow.GetLogger(ctx).Warn("machine unusable; trying another", "machine", j.lease.MachineID, "error", err)
		j.release(ctx, j.own(err.Error(), true))
		*exclude = append(*exclude, j.lease.MachineID)
		return nil
	}
	*githubFaults++
	return j.backOff(ctx, err, *githubFaults)
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
		j.onInProgress(ctx, ev)
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

// onInProgress folds in the job's pickup by a runner.
func (j *runnerJob) onInProgress(ctx workflow.Context, ev runnerapi.WorkflowJobEvent) {
	if j.st.PickedUpAt.IsZero() {
		j.st.PickedUpAt = workflow.Now(ctx)
		j.recordQueueTime(ctx, ev)
	}
	j.st.RanOn = ev.RunnerName
	if j.completed == nil {
		j.setPhase(ctx, runnerapi.JobRunning)
	}
	j.tellPoolStarted(ctx, ev.RunnerName)
}

// recordQueueTime records the job's time in GitHub's queue, from its
// creation to its start, when the event tells both.
func (j *runnerJob) recordQueueTime(ctx workflow.Context, ev runnerapi.WorkflowJobEvent) {
	created := ev.CreatedAt
	if created.IsZero() {
		created = j.in.Job.CreatedAt
	}
	if !created.IsZero() && !ev.StartedAt.IsZero() && !ev.StartedAt.Before(created) {
		workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"pool": j.in.Pool}).Timer(MetricJobQueue).
			Record(ev.StartedAt.Sub(created))
	}
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
		fired, err := j.awaitEventOrCheck(ctx, events)
		if err != nil {
			return false, err
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
		if j.onJobStatus(ctx, gs) {
			return true, nil
		}
	}
	return false, nil
}

// awaitEventOrCheck waits for a job event or the time to check the job with
// GitHub (fired): the pickup timeout, then jobRecheckEvery once picked up.
func (j *runnerJob) awaitEventOrCheck(ctx workflow.Context, events workflow.ReceiveChannel) (fired bool, err error) {
	wait := j.settings.PickupTimeout
	if !j.st.PickedUpAt.IsZero() {
		wait = jobRecheckEvery
	}
	tctx, cancel := workflow.WithCancel(ctx)
	timer := workflow.NewTimerWithOptions(tctx, wait, workflow.TimerOptions{Summary: "check the job with GitHub"})
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
	return fired, nil
}

// onJobStatus folds in GitHub's answer about the job; it returns true when
// the job was not picked up in time and this attempt's machine was
// released (another is tried).
func (j *runnerJob) onJobStatus(ctx workflow.Context, gs activities.JobStatusResult) bool {
	switch gs.Status {
	case "completed":
		j.onEvent(ctx, runnerapi.WorkflowJobEvent{Action: "completed", JobID: j.in.Job.JobID, RunnerName: gs.RunnerName, Conclusion: gs.Conclusion})
	case "in_progress":
		j.onEvent(ctx, runnerapi.WorkflowJobEvent{Action: "in_progress", JobID: j.in.Job.JobID, RunnerName: gs.RunnerName})
	default: // queued, waiting: not picked up yet
		if !j.st.PickedUpAt.IsZero() {
			return false
		}
		return j.notPickedUp(ctx, gs)
	}
	return false
}

// notPickedUp releases the machine of a job still queued after the pickup
// timeout (true), unless its JIT runner is running another job (false: it
// is checked again next time).
func (j *runnerJob) notPickedUp(ctx workflow.Context, gs activities.JobStatusResult) bool {
	removed := false // our runner deregistered before it took a job
	if j.settings.Mode == pools.ModeJIT {
		var wait bool
		if removed, wait = j.removeIdleOwnRunner(ctx); wait {
			return false
		}
	}
	workflow.GetLogger(ctx).Warn("job not picked up in time; trying another machine", "machine", j.lease.MachineID, "status", gs.Status)
	rel := j.own("job not picked up within "+j.settings.PickupTimeout.String(), false)
	if j.settings.Mode == pools.ModeJIT && removed {
		rel = j.clean(rel)
	}
	j.release(ctx, rel)
	return true
}

// removeIdleOwnRunner removes the job's own JIT runner if it is idle:
// removed reports it gone before it took a job; wait, that it runs
// another queued job (or, before runnerJobGoneRunnerVersion, is gone).
func (j *runnerJob) removeIdleOwnRunner(ctx workflow.Context) (removed, wait bool) {
	res, ok := j.removeOwnRunnerResult(ctx)
	removed = ok && !res.Busy && !res.NotFound
	if ok && (res.Busy || (res.NotFound && j.gone < 1)) {
		// Our runner is running another queued job: that job's
		// own runner may come for ours, and ours is gone only
		// after its job (checked again next time).
		return removed, true
	}
	if ok && res.NotFound {
		workflow.GetLogger(ctx).Warn("job still queued and its runner is gone; starting another runner", "runner", j.lease.RunnerName)
	}
	return removed, false
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
