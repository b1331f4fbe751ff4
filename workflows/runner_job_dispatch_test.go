package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// The job tells its pool what its wake saw, and records the dispatch
// latency (queued webhook to the wake of its machine) once per job, with
// the pool as its only tag.
func TestRunnerJobReportsWakeAndDispatchLatency(t *testing.T) {
	m := newMetricsCapture()
	w := &jobWorld{wakeFails: map[string]bool{"m1": true}, acquireIn: 45 * time.Second, metrics: m}
	env := newJobEnv(t, w)
	second := runnerapi.RunnerName(jobTestPool, 21, 2)
	var begin time.Time
	env.RegisterDelayedCallback(func() { begin = env.Now() }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 21, second, "d1")) }, 2*time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(21))
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"m1", "m2"}, w.wakes)

	timers := m.named(MetricDispatchLatency)
	require.Len(t, timers, 1, "once per job, at its first wake (m1 failed to wake; m2 was the second)")
	assert.Equal(t, "timer", timers[0].kind)
	assert.Equal(t, 45*time.Second, timers[0].dur, "the workflow started with the queued webhook; the lease took 45s")
	assert.Equal(t, jobTestPool, timers[0].tags["pool"])

	require.Len(t, w.observed, 1, "only the wake that succeeded is reported")
	o := w.observed[0]
	assert.Equal(t, "m2", o.MachineID)
	assert.Equal(t, dedalus.PhaseSleeping, o.WasPhase)
	assert.True(t, o.WasTransitionAt.Equal(jobEpoch))
	assert.Equal(t, dedalus.PhaseRunning, o.Phase)
	assert.True(t, o.TransitionAt.Equal(begin.Add(90*time.Second)), "%v", o.TransitionAt.Sub(begin))
}

// The job's queue time (GitHub's created_at to the started_at of its
// in_progress) is recorded once, however many times in_progress arrives.
func TestRunnerJobRecordsQueueTimeOnce(t *testing.T) {
	m := newMetricsCapture()
	w := &jobWorld{metrics: m}
	env := newJobEnv(t, w)
	runner := runnerapi.RunnerName(jobTestPool, 31, 1)
	created := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	progress := func(delivery string) runnerapi.WorkflowJobEvent {
		ev := jobEvent("in_progress", 31, runner, delivery)
		ev.CreatedAt, ev.StartedAt = created, created.Add(75*time.Second)
		return ev
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, progress("p1")) }, time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, progress("p1")) }, 2*time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, progress("p2")) }, 3*time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 31, runner, "c1")) }, 4*time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(31))
	require.NoError(t, env.GetWorkflowError())

	timers := m.named(MetricJobQueue)
	require.Len(t, timers, 1, "a redelivery (p1 again) and GitHub's second in_progress (p2) add nothing")
	assert.Equal(t, 75*time.Second, timers[0].dur)
	assert.Equal(t, jobTestPool, timers[0].tags["pool"])
}

// A pool with a machine to hand answers the fast path: the job leases and
// wakes without the acquire activity, at the moment it starts (the wake is
// a local activity in the same workflow task), and runs as before.
func TestRunnerJobDispatchesThroughTheFastPath(t *testing.T) {
	m := newMetricsCapture()
	w := &jobWorld{metrics: m, acquireNow: func(in activities.AcquireInput) (activities.AcquireAnswer, error) {
		return activities.AcquireAnswer{Lease: runnerapi.Lease{MachineID: "m7", RunnerName: runnerapi.RunnerName(jobTestPool, in.Request.JobID, in.Request.Attempt)}}, nil
	}}
	env := newJobEnv(t, w)
	own := runnerapi.RunnerName(jobTestPool, 42, 1)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 42, own, "d1")) }, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(42))
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, w.nowAcquires, 1)
	assert.Equal(t, runnerapi.AcquireRequest{JobID: 42, Attempt: 1, Repo: "octo/app"}, w.nowAcquires[0])
	assert.Empty(t, w.acquires, "no acquire activity")
	assert.Equal(t, []string{"m7"}, w.wakes)
	assert.Equal(t, []string{own}, w.started)
	timers := m.named(MetricDispatchLatency)
	require.Len(t, timers, 1)
	assert.Zero(t, timers[0].dur, "woken as the job started")
}

// No machine at once (or the fast path failed): the same request goes to
// the acquire activity, which waits in the pool's queue.
func TestRunnerJobFallsBackToTheQueueWithoutAMachineAtOnce(t *testing.T) {
	for name, answer := range map[string]func(activities.AcquireInput) (activities.AcquireAnswer, error){
		"queued": nil,
		"failed": func(activities.AcquireInput) (activities.AcquireAnswer, error) {
			return activities.AcquireAnswer{}, errors.New("frontend unavailable")
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := &jobWorld{acquireNow: answer, acquireIn: 30 * time.Second}
			env := newJobEnv(t, w)
			own := runnerapi.RunnerName(jobTestPool, 5, 1)
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 5, own, "d1")) }, 2*time.Minute)
			env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(5))
			require.NoError(t, env.GetWorkflowError())
			require.Len(t, w.nowAcquires, 1)
			assert.Equal(t, w.nowAcquires, w.acquires, "the same request, queued")
			assert.Equal(t, []string{"m1"}, w.wakes)
			assert.Equal(t, []string{own}, w.started)
		})
	}
}

// On the fast path the runner starts in the wake's workflow task: both are
// local activities, so the awake machine waits for no activity task before
// its runner starts.
func TestRunnerJobStartsItsRunnerRightAfterTheWake(t *testing.T) {
	w := &jobWorld{acquireNow: func(in activities.AcquireInput) (activities.AcquireAnswer, error) {
		return activities.AcquireAnswer{Lease: runnerapi.Lease{MachineID: "m7", RunnerName: runnerapi.RunnerName(jobTestPool, in.Request.JobID, in.Request.Attempt)}}, nil
	}}
	env := newJobEnv(t, w)
	var local, remote []string
	env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) {
		local = append(local, info.ActivityType.Name)
	})
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		remote = append(remote, info.ActivityType.Name)
	})
	own := runnerapi.RunnerName(jobTestPool, 42, 1)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 42, own, "d1")) }, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(42))
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{own}, w.started)
	assert.Subset(t, local, []string{"WakeMachine", "StartJITRunner"})
	assert.NotContains(t, remote, "StartJITRunner")
}

// A job whose first machine failed shows no machine while its second
// attempt acquires, in its status and in its search attributes: the first
// machine went back to the pool (broken), and a reader that took it for the
// job's machine would miss the next lease (the reconciler did, in the
// cluster chaos run, and deleted the new machine under the starting runner).
func TestRunnerJobRetryShowsNoStaleMachine(t *testing.T) {
	w := &jobWorld{wakeFails: map[string]bool{"m1": true}, acquireIn: 45 * time.Second}
	env := newJobEnv(t, w)
	var listed []string // "phase machine", upsert by upsert
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		phase, _ := sa.GetKeyword(SearchAttrPhase)
		machine, _ := sa.GetKeyword(SearchAttrMachineID)
		listed = append(listed, phase+" "+machine)
	}).Return(nil)
	var during runnerapi.RunnerJobStatus
	env.RegisterDelayedCallback(func() { during = jobStatus(t, env) }, time.Minute) // m1 failed at 45s; m2 comes at 90s
	second := runnerapi.RunnerName(jobTestPool, 22, 2)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("in_progress", 22, second, "p1")) }, 2*time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 22, second, "c1")) }, 3*time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(22))
	require.NoError(t, env.GetWorkflowError())

	assert.Equal(t, runnerapi.RunnerJobStatus{Phase: runnerapi.JobAcquiring, Pool: jobTestPool, JobID: 22, Attempt: 2,
		QueuedAt: during.QueuedAt}, during, "attempt 2 holds no machine yet")
	assert.Equal(t, []string{"acquiring ", "waking m1", "acquiring ", "waking m2", "starting_runner m2", "waiting_for_pickup m2",
		"running m2", "completed m2"}, listed[1:], "the first upsert names the pool and the job; the second acquiring one shows no m1")
}
