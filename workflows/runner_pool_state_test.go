package workflows

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

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

// Persistent mode: job 31 (lease dm-1) ran on dm-2's runner, job 32 (lease
// dm-2) runs on dm-1's. 31's completion frees dm-2 and hands dm-1 to 32; 31's
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

// Persistent mode: job 32 starts on dm-1's runner (leased to 31): the
// leases swap at once, so 31's own release (31 was cancelled and never
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
