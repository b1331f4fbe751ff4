package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

func TestPoolDrain(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() {
		acq.job(env, 1)
		acq.job(env, 2)
		acq.job(env, 3)
	}, 0)
	env.RegisterDelayedCallback(func() {
		l1, _ := acq.lease(1)
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: l1.MachineID, JobID: 1})
	}, time.Minute)
	var idle string
	env.RegisterDelayedCallback(func() {
		l1, _ := acq.lease(1)
		idle = l1.MachineID
		env.SignalWorkflow(runnerapi.SignalDrain, runnerapi.DrainRequest{})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, []string{idle}, w.list(&w.deletes), "the idle machine is deleted at once")
		inv := inventory(t, env)
		assert.Equal(t, 2, inv.Counts[runnerapi.MachineDraining])
		assert.Len(t, inv.Machines, 2)
		l2, _ := acq.lease(2)
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: l2.MachineID, JobID: 2})
		// A new job is not given a draining machine.
		acq.job(env, 4)
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() {
		l2, _ := acq.lease(2)
		assert.Contains(t, w.list(&w.deletes), l2.MachineID, "a drained machine is deleted when released")
		l4, ok := acq.lease(4)
		require.True(t, ok)
		assert.Equal(t, "dm-4", l4.MachineID)
		// Draining one machine by ID.
		l3, _ := acq.lease(3)
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: l3.MachineID, JobID: 3})
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: "dm-4", JobID: 4})
	}, 4*time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(runnerapi.SignalDrain, runnerapi.DrainRequest{MachineID: "dm-4"})
	}, 5*time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Empty(t, inv.Machines)
	}, 6*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 3)}, time.Hour)
	assert.Len(t, w.list(&w.deletes), 4)
	assert.Len(t, w.creates, 4)
}

func TestPoolResize(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(runnerapi.SignalResize, runnerapi.ResizeRequest{MinIdle: intp(3), MaxMachines: intp(3)})
	}, 0)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Equal(t, 3, inv.MinIdle)
		assert.Equal(t, 3, inv.Counts[runnerapi.MachineIdle], "provisioned up to min_idle")
		assert.ElementsMatch(t, []string{"dm-1", "dm-2", "dm-3"}, w.list(&w.sleeps), "min_idle machines sleep")
		acq.job(env, 1)
		acq.job(env, 2)
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		l1, ok := acq.lease(1)
		require.True(t, ok)
		assert.False(t, l1.Fresh)
		env.SignalWorkflow(runnerapi.SignalResize, runnerapi.ResizeRequest{MinIdle: intp(0), MaxMachines: intp(1)})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Equal(t, 1, inv.MaxMachines)
		assert.Len(t, inv.Machines, 2, "the idle machine went; busy ones stay until released")
		assert.Equal(t, 2, inv.Counts[runnerapi.MachineBusy])
		l1, _ := acq.lease(1)
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: l1.MachineID, JobID: 1})
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() {
		l1, _ := acq.lease(1)
		_, ok := machineByID(inventory(t, env), l1.MachineID)
		assert.False(t, ok, "released above max_machines: deleted")
		l2, _ := acq.lease(2)
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: l2.MachineID, JobID: 2})
	}, 4*time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		require.Len(t, inv.Machines, 1)
		assert.Equal(t, runnerapi.MachineIdle, inv.Machines[0].State, "within bounds: kept idle")
		// Negative bounds are ignored.
		env.SignalWorkflow(runnerapi.SignalResize, runnerapi.ResizeRequest{MaxMachines: intp(-1)})
	}, 5*time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, 1, inventory(t, env).MaxMachines)
	}, 6*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 1)}, time.Hour)
	assert.Len(t, w.list(&w.deletes), 2)
	assert.Len(t, w.creates, 3)
}

func TestPoolPrewarmWakesIdleMachines(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(runnerapi.SignalPrewarm, runnerapi.PrewarmRequest{Count: 2})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Len(t, w.list(&w.wakes), 2)
		inv := inventory(t, env)
		assert.Equal(t, 3, inv.Counts[runnerapi.MachineIdle], "woken machines stay idle")
		// Within their autosleep window they count as awake: no new wakes.
		env.SignalWorkflow(runnerapi.SignalPrewarm, runnerapi.PrewarmRequest{Count: 2})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Len(t, w.list(&w.wakes), 2)
		acq.job(env, 1)
	}, 2*time.Minute+10*time.Second)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(1)
		require.True(t, ok)
		assert.Contains(t, w.list(&w.wakes), l.MachineID, "a job gets a prewarmed machine first")
		// Long after autosleep: the next prewarm wakes again, no more than exist.
		env.SignalWorkflow(runnerapi.SignalPrewarm, runnerapi.PrewarmRequest{Count: 5})
	}, 30*time.Minute)
	env.RegisterDelayedCallback(func() {
		// Two woken before, and the machine provisioned to keep min_idle
		// after the job took one.
		assert.Len(t, w.list(&w.wakes), 5, "every idle machine, no more")
		assert.Equal(t, 3, inventory(t, env).Counts[runnerapi.MachineIdle])
	}, 31*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(3, 5)}, time.Hour)
	assert.Len(t, w.creates, 4)
}
