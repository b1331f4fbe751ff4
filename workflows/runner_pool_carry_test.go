package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

func TestPoolContinueAsNewCarriesMachinesAndQueue(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	var l1, l2 runnerapi.Lease
	env.RegisterDelayedCallback(func() {
		for job := int64(1); job <= 4; job++ {
			acq.job(env, job)
		}
	}, 0)
	env.RegisterDelayedCallback(func() {
		l1, _ = acq.lease(1)
		l2, _ = acq.lease(2)
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(runnerapi.SignalResize, runnerapi.ResizeRequest{MinIdle: intp(1)})
	}, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerPoolName, runnerapi.PoolInput{Pool: testPool(0, 2)})
	next := continuedAsNew[runnerapi.PoolInput](t, env, runnerapi.RunnerPoolName)
	require.NotNil(t, next.Carry)
	c := next.Carry
	assert.Equal(t, "linux", next.Pool.Name)
	assert.Equal(t, 2, c.Seq)
	assert.Equal(t, 1, c.MinIdle)
	assert.Equal(t, 2, c.MaxMachines)
	require.Len(t, c.Machines, 2)
	for _, m := range c.Machines {
		assert.Equal(t, runnerapi.MachineBusy, m.State)
		assert.Equal(t, 1, m.Jobs)
	}
	assert.Equal(t, []runnerapi.AcquireRequest{{Repo: testRepo, JobID: 3, Attempt: 1}, {Repo: testRepo, JobID: 4, Attempt: 1}}, c.Queue)
	assert.Len(t, w.creates, 2)
	// The waiting requests were told to retry against the next run.
	for _, job := range []int64{3, 4} {
		var ae *temporal.ApplicationError
		require.True(t, errors.As(acq.errs[job], &ae), "job %d: %v", job, acq.errs[job])
		assert.Equal(t, runnerapi.ErrTypePoolContinuingAsNew, ae.Type())
		assert.False(t, ae.NonRetryable())
	}

	assertNextRunServesCarriedQueue(t, next, l1, l2)
}

// assertNextRunServesCarriedQueue runs the pool's next run from next: a
// release that arrived during the handover is applied first, and its
// machine is kept for job 3 (first in line) although job 4 comes back
// first; no machine is provisioned.
func assertNextRunServesCarriedQueue(t *testing.T, next runnerapi.PoolInput, l1, l2 runnerapi.Lease) {
	t.Helper()
	c := next.Carry
	env2, w2 := newPoolEnv(t)
	acq2 := newAcquires()
	c.Pending = []runnerapi.PoolSignal{{Release: &runnerapi.ReleaseRequest{MachineID: l1.MachineID, JobID: 1}}}
	env2.RegisterDelayedCallback(func() {
		acq2.job(env2, 4)
		// A caller of a finished lease re-attaches to it.
		acq2.job(env2, 2)
	}, time.Second)
	env2.RegisterDelayedCallback(func() {
		_, ok := acq2.lease(4)
		assert.False(t, ok, "job 4 waits behind job 3")
		l, ok := acq2.lease(2)
		require.True(t, ok)
		assert.Equal(t, l2.MachineID, l.MachineID)
		inv := inventory(t, env2)
		assert.Equal(t, []int64{4}, inv.Queue)
		m, _ := machineByID(inv, l1.MachineID)
		assert.Equal(t, int64(3), m.JobID, "held for job 3")
		assert.True(t, m.Reserved)
		acq2.job(env2, 3)
	}, 10*time.Second)
	env2.RegisterDelayedCallback(func() {
		l3, ok := acq2.lease(3)
		require.True(t, ok)
		assert.Equal(t, runnerapi.Lease{MachineID: l1.MachineID, RunnerName: runnerapi.RunnerName("linux", 3, 1)}, l3)
		m, _ := machineByID(inventory(t, env2), l1.MachineID)
		assert.False(t, m.Reserved)
		env2.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: l2.MachineID, JobID: 2})
	}, 20*time.Second)
	env2.RegisterDelayedCallback(func() {
		l4, ok := acq2.lease(4)
		require.True(t, ok)
		assert.Equal(t, l2.MachineID, l4.MachineID)
		assert.Empty(t, inventory(t, env2).Queue)
	}, 30*time.Second)
	runPool(t, env2, next, time.Hour)
	assert.Empty(t, w2.creates, "no machine provisioned: the carried ones served everyone")
	assert.Equal(t, []int64{2, 3, 4}, acq2.order)
}

func TestPoolCarriedPlaceExpires(t *testing.T) {
	env, w := newPoolEnv(t)
	since := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	in := runnerapi.PoolInput{Pool: testPool(0, 1), Carry: &runnerapi.PoolCarry{
		Machines: []runnerapi.PoolMachine{
			{MachineID: "dm-1", State: runnerapi.MachineBusy, JobID: 1, Attempt: 1, RunnerName: runnerapi.RunnerName("linux", 1, 1), Jobs: 1, Repo: testRepo, Since: since},
			{MachineID: "dm-9", State: runnerapi.MachineBroken, Since: since},
		},
		Queue:       []runnerapi.AcquireRequest{{Repo: testRepo, JobID: 2, Attempt: 1}},
		Seq:         9,
		MaxMachines: 1,
		Pending:     []runnerapi.PoolSignal{{Release: &runnerapi.ReleaseRequest{RunnerName: runnerapi.RunnerName("linux", 1, 1), JobID: 1}}},
	}}
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		m, _ := machineByID(inv, "dm-1")
		assert.True(t, m.Reserved)
		assert.Equal(t, int64(2), m.JobID)
		_, ok := machineByID(inv, "dm-9")
		assert.False(t, ok, "a carried broken machine is deleted again")
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		m, _ := machineByID(inv, "dm-1")
		assert.Equal(t, runnerapi.MachineIdle, m.State, "job 2 never came back: the machine returned")
		assert.False(t, m.Reserved)
		assert.Empty(t, inv.Queue)
	}, reservationTTL+time.Minute)
	runPool(t, env, in, time.Hour)
	assert.Equal(t, []string{"dm-9"}, w.list(&w.deletes))
	assert.Equal(t, []string{"dm-1"}, w.list(&w.sleeps))
	assert.Empty(t, w.creates)
}
