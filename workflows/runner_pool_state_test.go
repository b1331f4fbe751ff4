package workflows

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// The pool's rules, without Temporal: each change returns its decisions.

var stateEpoch = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func newState(minIdle, maxMachines int, machines ...*poolMachine) *poolState {
	return &poolState{
		cfg: testPool(minIdle, maxMachines), minIdle: minIdle, maxMachines: maxMachines, v: 1,
		machines: machines, now: stateEpoch,
		log:     sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
		counter: client.MetricsNopHandler.Counter(MetricPoolAwake),
	}
}

func idleMachine(id string) *poolMachine {
	return &poolMachine{PoolMachine: runnerapi.PoolMachine{MachineID: id, State: runnerapi.MachineIdle, Since: stateEpoch.Add(-time.Hour)}}
}

func leasedMachine(id string, job int64, runner string) *poolMachine {
	m := &poolMachine{PoolMachine: runnerapi.PoolMachine{MachineID: id, State: runnerapi.MachineBusy, JobID: job, Attempt: 1,
		RunnerName: runnerapi.RunnerName("linux", job, 1), Since: stateEpoch.Add(-time.Hour)}}
	m.PersistentRunner = runner
	return m
}

func kinds(ds []decision) []decisionKind {
	var out []decisionKind
	for _, d := range ds {
		out = append(out, d.kind)
	}
	return out
}

func (p *poolState) wait(job int64) *waiter {
	w := &waiter{req: runnerapi.AcquireRequest{JobID: job, Attempt: 1}, arrived: true}
	p.queue = append(p.queue, w)
	return w
}

func TestPoolStateDispatchGrantsThenProvisions(t *testing.T) {
	dm1 := idleMachine("dm-1")
	dm1.needsSleep = true
	p := newState(0, 2, dm1)
	w1, w2, w3 := p.wait(1), p.wait(2), p.wait(3)
	p.dispatch()
	assert.Same(t, dm1, w1.m, "the free machine goes to the oldest request")
	assert.Equal(t, runnerapi.MachineBusy, dm1.State)
	assert.False(t, dm1.needsSleep, "a leased machine is not put to sleep")
	ds := p.takeDecisions()
	require.Equal(t, []decisionKind{decideProvision}, kinds(ds), "one more machine, up to max_machines")
	assert.True(t, ds[0].forWaiter)
	assert.Equal(t, runnerapi.ProvisionWorkflowID("linux", 1), ds[0].m.Provision)
	assert.Nil(t, w2.m)
	assert.Nil(t, w3.m)
	assert.Len(t, p.queue, 2, "jobs 2 and 3 wait")
	p.dispatch()
	assert.Empty(t, p.takeDecisions(), "a dispatch with nothing new decides nothing")
}

func TestPoolStateReleaseSleepsOrDeletes(t *testing.T) {
	dm1, dm2 := leasedMachine("dm-1", 1, ""), leasedMachine("dm-2", 2, "")
	p := newState(0, 2, dm1, dm2)
	p.release(runnerapi.ReleaseRequest{MachineID: "dm-1", JobID: 1})
	assert.Empty(t, p.takeDecisions())
	p.dispatch()
	ds := p.takeDecisions()
	require.Equal(t, []decisionKind{decideSleep}, kinds(ds), "released, nobody waits: it sleeps")
	assert.Same(t, dm1, ds[0].m)

	p.release(runnerapi.ReleaseRequest{MachineID: "dm-2", JobID: 2, Broken: true, Reason: "wake failed"})
	ds = p.takeDecisions()
	require.Equal(t, []decisionKind{decideDelete}, kinds(ds))
	assert.Equal(t, "broken: wake failed", ds[0].why)
	assert.Equal(t, runnerapi.MachineBroken, dm2.State)

	p.release(runnerapi.ReleaseRequest{MachineID: "dm-1", JobID: 7})
	assert.Empty(t, p.takeDecisions(), "a release of a free machine changes nothing")
}

func TestPoolStateResizeDeletesLongestIdleFirst(t *testing.T) {
	old, recent := idleMachine("dm-1"), idleMachine("dm-2")
	recent.Since = stateEpoch.Add(-time.Minute)
	p := newState(0, 3, recent, old, leasedMachine("dm-3", 3, ""))
	p.resize(runnerapi.ResizeRequest{MaxMachines: intp(2)})
	ds := p.takeDecisions()
	require.Equal(t, []decisionKind{decideDelete}, kinds(ds))
	assert.Same(t, old, ds[0].m)
	assert.Equal(t, 2, p.live())
}

// Persistent mode, runs started before runnerPoolAccountingVersion: job 31
// (lease dm-1) ran on dm-2's runner, job 32 (lease dm-2) runs on dm-1's. 31's completion frees dm-2 and hands dm-1 to 32; 31's
// own release is then stale.
func TestPoolStatePersistentCompletionSwapsLeases(t *testing.T) {
	dm1 := leasedMachine("dm-1", 31, runnerapi.PersistentRunnerName("linux", "dm-1"))
	dm2 := leasedMachine("dm-2", 32, runnerapi.PersistentRunnerName("linux", "dm-2"))
	p := newState(0, 2, dm1, dm2)
	p.cfg.Mode = pools.ModePersistent
	p.release(runnerapi.ReleaseRequest{RunnerName: dm2.PersistentRunner, JobID: 31})
	p.release(runnerapi.ReleaseRequest{MachineID: "dm-1", RunnerName: runnerapi.RunnerName("linux", 31, 1), JobID: 31, Attempt: 1})
	assert.Equal(t, runnerapi.MachineIdle, dm2.State)
	assert.Equal(t, runnerapi.MachineBusy, dm1.State)
	assert.Equal(t, int64(32), dm1.JobID)
	p.dispatch()
	ds := p.takeDecisions()
	require.Equal(t, []decisionKind{decideSleep}, kinds(ds))
	assert.Same(t, dm2, ds[0].m, "only the machine whose runner is free sleeps")
}

func TestPoolStateWithdraw(t *testing.T) {
	dm1 := leasedMachine("dm-1", 1, "")
	p := newState(0, 1, dm1)
	w2 := p.wait(2)
	p.withdraw(runnerapi.WithdrawRequest{JobID: 2})
	assert.True(t, w2.withdrawn)
	assert.Empty(t, p.queue)
	assert.True(t, p.wasWithdrawn(runnerapi.AcquireRequest{JobID: 2, Attempt: 1}))
	p.withdraw(runnerapi.WithdrawRequest{JobID: 1, Attempt: 1})
	assert.Equal(t, runnerapi.MachineIdle, dm1.State, "the withdrawn lease is returned")
	p.resize(runnerapi.ResizeRequest{MaxMachines: intp(3)})
	p.dispatch()
	assert.Equal(t, []decisionKind{decideSleep}, kinds(p.takeDecisions()), "nothing provisioned for withdrawn requests")
}

// Persistent mode, runs started before runnerPoolAccountingVersion: job 32
// starts on dm-1's runner (leased to 31): the leases swap at once, so 31's own release (31 was cancelled and never
// ran) frees dm-2, whose runner is free, never dm-1 under job 32.
func TestPoolStateRunnerStartedSwapsLeases(t *testing.T) {
	dm1 := leasedMachine("dm-1", 31, runnerapi.PersistentRunnerName("linux", "dm-1"))
	dm2 := leasedMachine("dm-2", 32, runnerapi.PersistentRunnerName("linux", "dm-2"))
	p := newState(0, 2, dm1, dm2)
	p.applySignal(runnerapi.PoolSignal{Started: &runnerapi.RunnerStarted{JobID: 32, RunnerName: dm1.PersistentRunner}})
	assert.Equal(t, int64(32), dm1.JobID)
	assert.Equal(t, int64(31), dm2.JobID)
	p.release(runnerapi.ReleaseRequest{MachineID: "dm-1", RunnerName: runnerapi.RunnerName("linux", 31, 1), JobID: 31, Attempt: 1, Reason: "cancelled"})
	assert.Equal(t, runnerapi.MachineBusy, dm1.State, "job 32 runs on it")
	assert.Equal(t, runnerapi.MachineIdle, dm2.State)
	p.release(runnerapi.ReleaseRequest{RunnerName: dm1.PersistentRunner, JobID: 32, Reason: "job completed"})
	assert.Equal(t, runnerapi.MachineIdle, dm1.State)
}

// persistentState is a persistent pool with the accounting of
// runnerPoolAccountingVersion: machines dm-1.. leased to the given jobs.
func persistentState(maxMachines int, leases ...int64) (*poolState, []*poolMachine) {
	var ms []*poolMachine
	for i, job := range leases {
		id := "dm-" + string(rune('1'+i))
		ms = append(ms, leasedMachine(id, job, runnerapi.PersistentRunnerName("linux", id)))
	}
	p := newState(0, maxMachines, ms...)
	p.cfg.Mode = pools.ModePersistent
	p.acct = 1
	return p, ms
}

// completes is what a job's RunnerJob sends when GitHub reports it
// completed on runner: the release of the runner that ran it (settleRanOn).
func completes(p *poolState, job int64, runner string) {
	p.release(runnerapi.ReleaseRequest{RunnerName: runner, JobID: job, Reason: "job completed"})
}

// ownRelease is a job attempt's release of its own lease.
func ownRelease(p *poolState, m *poolMachine, job int64) {
	p.release(runnerapi.ReleaseRequest{MachineID: m.MachineID, RunnerName: runnerapi.RunnerName("linux", job, 1), JobID: job, Attempt: 1, Reason: "job ran on another runner"})
}

// noHold asserts that the pool holds nothing for the jobs: no queue
// place, no lease, no runner running them.
func noHold(t *testing.T, p *poolState, jobs ...int64) {
	t.Helper()
	for _, j := range jobs {
		assert.Nil(t, p.waiterOf(j, 1), "job %d keeps a queue place", j)
		for _, m := range p.machines {
			assert.NotEqual(t, j, m.JobID, "job %d keeps its lease on %s", j, m.MachineID)
			assert.NotEqual(t, j, m.RunningJob, "%s's runner still counted running job %d", m.MachineID, j)
		}
	}
}

// The chaos run's defect: job 21 leased dm-1, whose persistent runner ran
// the queued jobs 27 and 22 (no lease) in turn. Their completions never
// free dm-1 under job 21 nor move its lease, and their RunnerJobs give up
// their places at once; job 21's completion on dm-1's runner frees it.
func TestPoolStatePersistentQueuedJobsRunOnALeasedMachine(t *testing.T) {
	p, ms := persistentState(1, 21)
	dm1 := ms[0]
	p.wait(27)
	p.wait(22)
	for _, j := range []int64{27, 22} {
		p.runnerStarted(runnerapi.RunnerStarted{JobID: j, RunnerName: dm1.PersistentRunner})
		assert.Equal(t, j, dm1.RunningJob)
		completes(p, j, dm1.PersistentRunner)
		p.withdraw(runnerapi.WithdrawRequest{JobID: j, Attempt: 1, Reason: "job completed before a machine was leased"})
		p.dispatch()
		assert.Empty(t, p.takeDecisions(), "job %d's completion neither frees nor sleeps dm-1", j)
		assert.Equal(t, runnerapi.MachineBusy, dm1.State)
		assert.Equal(t, int64(21), dm1.JobID, "still leased to job 21, which its runner has not run yet")
		assert.Zero(t, dm1.RunningJob)
	}
	assert.Empty(t, p.queue)
	completes(p, 21, dm1.PersistentRunner)
	p.dispatch()
	assert.Equal(t, []decisionKind{decideSleep}, kinds(p.takeDecisions()), "free once its runner ran the job that leased it")
	assert.Equal(t, runnerapi.MachineIdle, dm1.State)
	noHold(t, p, 21, 27, 22)
}

// Job 21 (lease dm-1) runs on dm-2's runner (dm-2 leased to job 23) after
// dm-1's runner ran the queued job 27. Its completion and its own release
// free dm-1, whose runner is idle; dm-2 stays leased to job 23, which has
// not run yet; nothing is left for 21 or 27.
func TestPoolStatePersistentLeaseHolderRunsOnAnotherMachine(t *testing.T) {
	p, ms := persistentState(2, 21, 23)
	dm1, dm2 := ms[0], ms[1]
	p.wait(27)
	p.runnerStarted(runnerapi.RunnerStarted{JobID: 27, RunnerName: dm1.PersistentRunner})
	completes(p, 27, dm1.PersistentRunner)
	p.withdraw(runnerapi.WithdrawRequest{JobID: 27, Attempt: 1})
	p.runnerStarted(runnerapi.RunnerStarted{JobID: 21, RunnerName: dm2.PersistentRunner})
	assert.Equal(t, int64(23), dm2.JobID, "a lease never moves")
	assert.Equal(t, int64(21), dm1.JobID)
	completes(p, 21, dm2.PersistentRunner)
	assert.Equal(t, runnerapi.MachineBusy, dm1.State, "job 21's own release frees it (after the pickup window)")
	ownRelease(p, dm1, 21)
	p.dispatch()
	ds := p.takeDecisions()
	require.Equal(t, []decisionKind{decideSleep}, kinds(ds))
	assert.Same(t, dm1, ds[0].m)
	assert.Equal(t, runnerapi.MachineBusy, dm2.State)
	assert.Equal(t, int64(23), dm2.JobID, "job 23 woke it and still needs a runner")
	noHold(t, p, 21, 27)

	// Job 23 runs on dm-2's runner and completes: dm-2 is free.
	completes(p, 23, dm2.PersistentRunner)
	assert.Equal(t, runnerapi.MachineIdle, dm2.State)
	noHold(t, p, 23)
}

// A machine whose runner is busy is never released, slept or handed to a
// waiting job: job 21's own release leaves dm-1 busy while its runner runs
// the queued job 27; 27's completion frees it for the next waiting job.
func TestPoolStatePersistentBusyRunnerKeepsItsMachine(t *testing.T) {
	p, ms := persistentState(1, 21)
	dm1 := ms[0]
	w30 := p.wait(30)
	p.runnerStarted(runnerapi.RunnerStarted{JobID: 27, RunnerName: dm1.PersistentRunner})
	ownRelease(p, dm1, 21)
	p.dispatch()
	assert.Empty(t, p.takeDecisions())
	assert.Equal(t, runnerapi.MachineBusy, dm1.State, "its runner runs job 27")
	assert.Nil(t, w30.m)
	assert.Zero(t, dm1.JobID, "job 21's lease is given back")
	assert.True(t, p.holdsForOthers(), "the running job is checked for liveness")

	completes(p, 27, dm1.PersistentRunner)
	p.dispatch()
	assert.Same(t, dm1, w30.m, "free: the waiting job gets it")
	noHold(t, p, 21, 27)

	// An idle awake machine whose runner takes a queued job is busy too.
	dm1.State, dm1.JobID, dm1.Attempt, dm1.needsSleep = runnerapi.MachineIdle, 0, 0, true
	p.runnerStarted(runnerapi.RunnerStarted{JobID: 31, RunnerName: dm1.PersistentRunner})
	p.dispatch()
	assert.Empty(t, p.takeDecisions(), "not slept under job 31")
	assert.Equal(t, runnerapi.MachineBusy, dm1.State)
	// A late runner_started (after the completion) does not make it busy again.
	completes(p, 31, dm1.PersistentRunner)
	p.runnerStarted(runnerapi.RunnerStarted{JobID: 31, RunnerName: dm1.PersistentRunner})
	assert.Equal(t, runnerapi.MachineIdle, dm1.State)
	assert.Zero(t, dm1.RunningJob)
}

// A running job whose RunnerJob is gone (and whose runner GitHub reports
// idle) stops counting at the liveness check, and its machine is free.
func TestPoolStatePersistentGoneRunningJobExpires(t *testing.T) {
	p, ms := persistentState(1, 21)
	dm1 := ms[0]
	p.runnerStarted(runnerapi.RunnerStarted{JobID: 27, RunnerName: dm1.PersistentRunner})
	ownRelease(p, dm1, 21)
	require.Equal(t, runnerapi.MachineBusy, dm1.State)
	p.expireGone(activities.LeaseCheckResult{Gone: []activities.LeaseHolder{{JobID: 27, RunnerName: dm1.PersistentRunner}}})
	assert.Equal(t, runnerapi.MachineIdle, dm1.State)
	noHold(t, p, 21, 27)
}
