package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

func TestPoolSaturationQueuesFIFO(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	var first, second runnerapi.Lease
	env.RegisterDelayedCallback(func() {
		for job := int64(1); job <= 4; job++ {
			acq.job(env, job)
		}
	}, 0)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Equal(t, []int64{3, 4}, inv.Queue, "two provisioned, two queued in arrival order")
		assert.Equal(t, 2, inv.Counts[runnerapi.MachineBusy])
		assert.Equal(t, []string{"dm-1", "dm-2"}, []string{inv.Machines[0].MachineID, inv.Machines[1].MachineID})
		var ok bool
		first, ok = acq.lease(1)
		require.True(t, ok)
		second, ok = acq.lease(2)
		require.True(t, ok)
		assert.True(t, first.Fresh && second.Fresh, "provisioned for the waiting jobs")
		assert.ElementsMatch(t, []string{"dm-1", "dm-2"}, []string{first.MachineID, second.MachineID})
		assert.Equal(t, runnerapi.RunnerName("linux", 1, 1), first.RunnerName)
		// The second machine is released first: it goes to job 3, the oldest waiter.
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: second.MachineID, JobID: 2})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		l3, ok := acq.lease(3)
		require.True(t, ok)
		assert.Equal(t, second.MachineID, l3.MachineID)
		assert.False(t, l3.Fresh)
		_, ok = acq.lease(4)
		assert.False(t, ok, "job 4 still waits")
		assert.Equal(t, []int64{4}, inventory(t, env).Queue)
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: first.MachineID, JobID: 1})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		l4, ok := acq.lease(4)
		require.True(t, ok)
		assert.Equal(t, first.MachineID, l4.MachineID)
		assert.Equal(t, runnerapi.RunnerName("linux", 4, 1), l4.RunnerName)
		inv := inventory(t, env)
		assert.Empty(t, inv.Queue)
		for _, m := range inv.Machines {
			assert.Equal(t, 2, m.Jobs, "each machine ran two jobs")
			assert.Equal(t, runnerapi.MachineBusy, m.State)
		}
	}, 3*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 2)}, time.Hour)

	assert.Len(t, w.creates, 2, "never above max_machines")
	assert.Empty(t, w.list(&w.sleeps), "machines handed straight to waiting jobs never sleep")
	assert.Equal(t, []int64{1, 2, 3, 4}, sortedFirstTwo(acq.order))
	require.Len(t, w.children, 2)
	assert.True(t, w.children[0].KeepAwake && w.children[1].KeepAwake)
	for _, s := range w.specs {
		assert.Equal(t, activities.MachineSpec{VCPU: pools.DefaultVCPU, MemoryMiB: pools.DefaultMemoryMiB, StorageGiB: pools.DefaultStorageGiB, Autosleep: pools.DefaultAutosleep}, s)
	}
}

// sortedFirstTwo orders the first two (concurrently provisioned) leases by job.
func sortedFirstTwo(order []int64) []int64 {
	out := append([]int64(nil), order...)
	if len(out) >= 2 && out[0] > out[1] {
		out[0], out[1] = out[1], out[0]
	}
	return out
}

func TestPoolReusesReleasedMachine(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() { acq.job(env, 1) }, 0)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(1)
		require.True(t, ok)
		assert.Equal(t, "dm-1", l.MachineID)
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: "dm-1", JobID: 1})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		m, ok := machineByID(inv, "dm-1")
		require.True(t, ok)
		assert.Equal(t, runnerapi.MachineIdle, m.State)
		assert.Equal(t, 1, m.Jobs)
		assert.Zero(t, m.JobID)
		assert.Empty(t, m.RunnerName)
		assert.Equal(t, []string{"dm-1"}, w.list(&w.sleeps), "a released machine nobody waits for sleeps")
		acq.job(env, 2)
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(2)
		require.True(t, ok)
		assert.Equal(t, runnerapi.Lease{MachineID: "dm-1", RunnerName: runnerapi.RunnerName("linux", 2, 1)}, l)
		m, _ := machineByID(inventory(t, env), "dm-1")
		assert.Equal(t, 2, m.Jobs)
		assert.Equal(t, int64(2), m.JobID)
	}, 3*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 2)}, time.Hour)
	assert.Len(t, w.creates, 1, "the second job reused the first machine")
	assert.Equal(t, []string{"dm-1"}, w.list(&w.setups))
}

func TestPoolAcquireIsIdempotent(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	again := newAcquires()
	env.RegisterDelayedCallback(func() {
		acq.job(env, 1)
		// A second caller for the same attempt (another update ID) while
		// the first waits: they share one place and one machine.
		again.send(env, "other-id", runnerapi.AcquireRequest{Repo: testRepo, JobID: 1, Attempt: 1})
	}, 0)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(1)
		require.True(t, ok)
		l2, ok := again.lease(1)
		require.True(t, ok)
		assert.Equal(t, l.MachineID, l2.MachineID)
		// A retried caller later re-attaches to its lease.
		again.send(env, "retry-id", runnerapi.AcquireRequest{Repo: testRepo, JobID: 1, Attempt: 1})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		l, _ := again.lease(1)
		assert.Equal(t, runnerapi.Lease{MachineID: "dm-1", RunnerName: runnerapi.RunnerName("linux", 1, 1)}, l)
		inv := inventory(t, env)
		require.Len(t, inv.Machines, 1)
		assert.Equal(t, 1, inv.Machines[0].Jobs)
		// A new attempt of the same job is a new request.
		acq.send(env, runnerapi.AcquireUpdateID(1, 2), runnerapi.AcquireRequest{Repo: testRepo, JobID: 1, Attempt: 2, Exclude: []string{"dm-1"}})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Len(t, inv.Machines, 2)
		m, _ := machineByID(inv, "dm-2")
		assert.Equal(t, 2, m.Attempt)
		assert.Equal(t, runnerapi.RunnerName("linux", 1, 2), m.RunnerName)
		// Bad requests are rejected by the validator.
		acq.send(env, "bad", runnerapi.AcquireRequest{Repo: testRepo, JobID: 0, Attempt: 1})
		acq.send(env, "bad2", runnerapi.AcquireRequest{Repo: testRepo, JobID: 9, Attempt: 0})
	}, 3*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 3)}, time.Hour)
	assert.Len(t, w.creates, 2, "one machine for attempt 1 (both callers), one for attempt 2")
	require.Len(t, acq.rejected, 2)
	for _, err := range acq.rejected {
		var ae *temporal.ApplicationError
		require.True(t, errors.As(err, &ae), "%v", err)
		assert.Equal(t, runnerapi.ErrTypeInvalidAcquire, ae.Type())
	}
}

func TestPoolReleaseByRunnerName(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() { acq.job(env, 7) }, 0)
	env.RegisterDelayedCallback(func() {
		// Stale releases (another job, an earlier attempt) and unknown
		// runners are ignored.
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: "dm-1", JobID: 6})
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: runnerapi.RunnerName("linux", 7, 2), JobID: 7})
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: "dm-1", JobID: 7, Attempt: 2})
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: "some-other-runner"})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		m, _ := machineByID(inventory(t, env), "dm-1")
		assert.Equal(t, runnerapi.MachineBusy, m.State, "stale releases did not free the lease")
		// The runner named for job 7 ran job 8 (GitHub hands a job to any
		// runner with its labels): its completion releases the lease.
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: runnerapi.RunnerName("linux", 7, 1), JobID: 8})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		m, _ := machineByID(inventory(t, env), "dm-1")
		assert.Equal(t, runnerapi.MachineIdle, m.State)
		assert.Equal(t, []string{"dm-1"}, w.list(&w.sleeps))
	}, 3*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 1)}, time.Hour)
}

func TestPoolReplacesBrokenMachine(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() { acq.job(env, 1) }, 0)
	env.RegisterDelayedCallback(func() {
		acq.job(env, 2)
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, []int64{2}, inventory(t, env).Queue, "max 1: job 2 waits")
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: "dm-1", JobID: 1, Broken: true, Reason: "wake failed"})
	}, time.Minute+10*time.Second)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(2)
		require.True(t, ok)
		assert.Equal(t, runnerapi.Lease{MachineID: "dm-2", RunnerName: runnerapi.RunnerName("linux", 2, 1), Fresh: true}, l)
		inv := inventory(t, env)
		require.Len(t, inv.Machines, 1, "the broken machine left the inventory")
		assert.Equal(t, "dm-2", inv.Machines[0].MachineID)
	}, 2*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 1)}, time.Hour)
	assert.Equal(t, []string{"dm-1"}, w.list(&w.deletes))
	assert.Len(t, w.creates, 2)
}

func TestPoolProvisioningFailureBacksOff(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	w.failCreate = func(n int) bool { return n == 1 }
	w.failSetup = func(n int) bool { return n == 1 } // on the second create's machine
	var begin time.Time
	env.RegisterDelayedCallback(func() {
		begin = env.Now()
		acq.job(env, 1)
	}, 0)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(1)
		require.True(t, ok)
		assert.Equal(t, "dm-3", l.MachineID)
		assert.True(t, l.Fresh)
		inv := inventory(t, env)
		require.Len(t, inv.Machines, 1)
	}, 10*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 2)}, time.Hour)

	require.Len(t, w.creates, 3, "retried until it worked, no more")
	assert.GreaterOrEqual(t, w.creates[1].Sub(begin), provisionBackoffBase, "first retry after the backoff")
	assert.GreaterOrEqual(t, w.creates[2].Sub(w.creates[1]), 2*provisionBackoffBase, "the backoff grows")
	assert.Less(t, w.creates[2].Sub(begin), 2*time.Minute)
	assert.Equal(t, []string{"dm-2"}, w.list(&w.deletes), "the machine whose setup failed was deleted")
	assert.Equal(t, []string{"dm-2", "dm-3"}, w.list(&w.setups))
}

func TestPoolProvisioningKeepsFailingWithoutHotLoop(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	w.failCreate = func(int) bool { return true }
	env.RegisterDelayedCallback(func() { acq.job(env, 1) }, 0)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 4)}, time.Hour)
	// 10s, 20s, 40s, 80s, 160s, then every 5 minutes: about 16 tries in an hour.
	assert.GreaterOrEqual(t, len(w.creates), 10)
	assert.LessOrEqual(t, len(w.creates), 20)
	for i := 1; i < len(w.creates); i++ {
		assert.GreaterOrEqual(t, w.creates[i].Sub(w.creates[i-1]), provisionBackoffBase)
	}
	_, ok := acq.lease(1)
	assert.False(t, ok)
}

func TestPoolProvisionsMinIdleOnStart(t *testing.T) {
	env, w := newPoolEnv(t)
	p := testPool(2, 4)
	p.Mode = pools.ModePersistent
	p.Machine = pools.Machine{VCPU: 2, MemoryMiB: 4096, StorageGiB: 30, Autosleep: "5m"}
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Equal(t, "linux", inv.Pool)
		assert.Equal(t, 2, inv.MinIdle)
		assert.Equal(t, 4, inv.MaxMachines)
		assert.Equal(t, 2, inv.Counts[runnerapi.MachineIdle])
		assert.Equal(t, []string{"dm-1", "dm-2"}, []string{inv.Machines[0].MachineID, inv.Machines[1].MachineID})
		assert.Empty(t, inv.Queue)
	}, time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: p}, time.Hour)
	require.Len(t, w.children, 2)
	assert.True(t, w.children[0].KeepAwake && w.children[1].KeepAwake, "new machines come back running")
	// With no job waiting, the pool puts them to sleep.
	assert.ElementsMatch(t, []string{"dm-1", "dm-2"}, w.list(&w.sleeps))
	assert.ElementsMatch(t, []string{"dm-1", "dm-2"}, w.list(&w.setups))
	assert.Equal(t, []*pools.Pool{&p, &p}, w.setupConfigs, "set up with the configuration the machines were created with")
	assert.ElementsMatch(t, []activities.RegisterInput{
		{Pool: "linux", MachineID: "dm-1", RunnerName: runnerapi.PersistentRunnerName("linux", "dm-1"), Config: &p},
		{Pool: "linux", MachineID: "dm-2", RunnerName: runnerapi.PersistentRunnerName("linux", "dm-2"), Config: &p},
	}, w.registers, "registered with the configuration the machines were created with")
	for _, s := range w.specs {
		assert.Equal(t, activities.MachineSpec{VCPU: 2, MemoryMiB: 4096, StorageGiB: 30, Autosleep: "5m"}, s)
	}
}

func TestPoolRecyclesExcludedMachineWhenFull(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() { acq.job(env, 1) }, 0)
	env.RegisterDelayedCallback(func() {
		// The runner never picked the job up: the job releases the machine
		// and retries elsewhere.
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: "dm-1", JobID: 1, Attempt: 1})
		acq.send(env, runnerapi.AcquireUpdateID(1, 2), runnerapi.AcquireRequest{Repo: testRepo, JobID: 1, Attempt: 2, Exclude: []string{"dm-1"}})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		require.Len(t, inv.Machines, 1)
		assert.Equal(t, "dm-2", inv.Machines[0].MachineID)
		assert.Equal(t, 2, inv.Machines[0].Attempt)
	}, 2*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 1)}, time.Hour)
	assert.Equal(t, []string{"dm-1"}, w.list(&w.deletes), "max 1: the excluded idle machine made room for a new one")
	assert.Len(t, w.creates, 2)
}

func TestPoolListsMachinesWhileTheyAreSetUp(t *testing.T) {
	env, w := newPoolEnv(t, func(w *poolWorld) { w.setupTakes = 20 * time.Minute })
	acq := newAcquires()
	env.RegisterDelayedCallback(func() { acq.job(env, 1) }, 0)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		require.Len(t, inv.Machines, 1)
		m := inv.Machines[0]
		assert.Equal(t, runnerapi.MachineProvisioning, m.State)
		assert.Equal(t, "runner-provision:linux:1", m.Provision)
		assert.Equal(t, "dm-1", m.MachineID, "owned (for the reconciler) from its creation")
		assert.Equal(t, []int64{1}, inv.Queue)
	}, 10*time.Minute)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(1)
		require.True(t, ok)
		assert.Equal(t, "dm-1", l.MachineID)
		assert.True(t, l.Fresh)
	}, 30*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 1)}, time.Hour)
	assert.Len(t, w.creates, 1)
}

func TestProvisionDeletesItsMachineOnFailureOrCancel(t *testing.T) {
	p := testPool(0, 1)
	p.Mode = pools.ModePersistent

	// Registration fails: the machine is deleted, the child fails.
	env, w := newPoolEnv(t, func(w *poolWorld) { w.failRegister = true })
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: runnerapi.ProvisionWorkflowID("linux", 4)})
	env.ExecuteWorkflow(runnerapi.RunnerProvisionName, runnerapi.ProvisionInput{Pool: p, Seq: 4})
	require.Error(t, env.GetWorkflowError())
	assert.Contains(t, env.GetWorkflowError().Error(), "registration token refused")
	assert.Equal(t, []string{"dm-4"}, w.list(&w.deletes))
	assert.Empty(t, w.list(&w.sleeps))

	// Cancelled while setting up (its pool ended): the machine is deleted.
	env, w = newPoolEnv(t, func(w *poolWorld) { w.setupTakes = time.Hour })
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: runnerapi.ProvisionWorkflowID("linux", 5)})
	env.ExecuteWorkflow(runnerapi.RunnerProvisionName, runnerapi.ProvisionInput{Pool: p, Seq: 5})
	var ce *temporal.CanceledError
	require.True(t, errors.As(env.GetWorkflowError(), &ce), "%v", env.GetWorkflowError())
	assert.Equal(t, []string{"dm-5"}, w.list(&w.deletes))

	// Success: set up, registered, asleep.
	env, w = newPoolEnv(t)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: runnerapi.ProvisionWorkflowID("linux", 6)})
	env.ExecuteWorkflow(runnerapi.RunnerProvisionName, runnerapi.ProvisionInput{Pool: p, Seq: 6})
	require.NoError(t, env.GetWorkflowError())
	var id string
	require.NoError(t, env.GetWorkflowResult(&id))
	assert.Equal(t, "dm-6", id)
	assert.Equal(t, []string{id}, w.list(&w.sleeps))
	assert.Empty(t, w.list(&w.deletes))
	assert.Equal(t, []activities.RegisterInput{{Pool: "linux", MachineID: id, RunnerName: "drydock-linux-" + id, Config: &p}}, w.registers)
}
