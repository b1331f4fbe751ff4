package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

func requireWithdrawn(t *testing.T, err error) {
	t.Helper()
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.Equal(t, runnerapi.ErrTypeAcquireWithdrawn, ae.Type())
	assert.True(t, ae.NonRetryable())
}

// Persistent mode: jobs 31 and 32 lease two machines, and GitHub runs each
// on the other's runner (their RunnerJobs report it). A machine is free
// once neither its lease nor its runner holds it: the machine running the
// other job is never freed or slept, and a lease never moves.
func TestPoolPersistentCompletionFreesTheMachineThatRanIt(t *testing.T) {
	env, w := newPoolEnv(t)
	p := testPool(0, 2)
	p.Mode = pools.ModePersistent
	acq := newAcquires()
	var l31, l32 runnerapi.Lease
	env.RegisterDelayedCallback(func() {
		acq.job(env, 31)
		acq.job(env, 32)
	}, 0)
	env.RegisterDelayedCallback(func() {
		var ok bool
		l31, ok = acq.lease(31)
		require.True(t, ok)
		l32, ok = acq.lease(32)
		require.True(t, ok)
		env.SignalWorkflow(runnerapi.SignalRunnerStarted, runnerapi.RunnerStarted{JobID: 31, RunnerName: runnerapi.PersistentRunnerName("linux", l32.MachineID)})
		env.SignalWorkflow(runnerapi.SignalRunnerStarted, runnerapi.RunnerStarted{JobID: 32, RunnerName: runnerapi.PersistentRunnerName("linux", l31.MachineID)})
		// Job 31 ran on the runner of job 32's machine, and completed:
		// its RunnerJob releases the runner that ran it, then its own lease.
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: runnerapi.PersistentRunnerName("linux", l32.MachineID), JobID: 31, Reason: "job completed"})
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: l31.MachineID, RunnerName: l31.RunnerName, JobID: 31, Attempt: 1, Reason: "job ran on another runner"})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		m31, _ := machineByID(inv, l31.MachineID)
		assert.Equal(t, runnerapi.MachineBusy, m31.State, "job 32 runs on it")
		assert.Equal(t, int64(32), m31.RunningJob)
		assert.Zero(t, m31.JobID, "job 31's lease is given back")
		m32, _ := machineByID(inv, l32.MachineID)
		assert.Equal(t, runnerapi.MachineBusy, m32.State, "still leased to job 32")
		assert.Equal(t, int64(32), m32.JobID)
		assert.Zero(t, m32.RunningJob, "its runner ran job 31, which completed")
		assert.Empty(t, w.list(&w.sleeps), "nothing sleeps under a lease or a running job")
		// Job 32 completes on the first machine's runner; its own release is late.
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: runnerapi.PersistentRunnerName("linux", l31.MachineID), JobID: 32, Reason: "job completed"})
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: l32.MachineID, RunnerName: l32.RunnerName, JobID: 32, Attempt: 1})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Equal(t, 2, inv.Counts[runnerapi.MachineIdle])
		assert.ElementsMatch(t, []string{l31.MachineID, l32.MachineID}, w.list(&w.sleeps))
		for _, m := range inv.Machines {
			assert.Zero(t, m.JobID)
			assert.Zero(t, m.RunningJob)
		}
	}, 3*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: p}, time.Hour)
}

// A withdrawn request leaves the queue at once (its acquire fails, no
// machine is provisioned for it) and a withdrawn lease is returned.
func TestPoolWithdrawDropsPlaceAndLease(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() { acq.job(env, 1) }, 0)
	env.RegisterDelayedCallback(func() { acq.job(env, 2) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, []int64{2}, inventory(t, env).Queue)
		env.SignalWorkflow(runnerapi.SignalWithdraw, runnerapi.WithdrawRequest{JobID: 2, Attempt: 1, Reason: "cancelled"})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Empty(t, inventory(t, env).Queue)
		acq.mu.Lock()
		requireWithdrawn(t, acq.errs[2])
		acq.mu.Unlock()
		// More room: nothing is provisioned for the withdrawn job.
		env.SignalWorkflow(runnerapi.SignalResize, runnerapi.ResizeRequest{MaxMachines: intp(2)})
		// A late acquire of the withdrawn attempt is refused.
		acq.send(env, "late", runnerapi.AcquireRequest{Repo: testRepo, JobID: 2, Attempt: 1})
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() {
		acq.mu.Lock()
		requireWithdrawn(t, acq.rejected[2])
		acq.mu.Unlock()
		env.SignalWorkflow(runnerapi.SignalWithdraw, runnerapi.WithdrawRequest{JobID: 1, Reason: "cancelled"})
	}, 4*time.Minute)
	env.RegisterDelayedCallback(func() {
		m, _ := machineByID(inventory(t, env), "dm-1")
		assert.Equal(t, runnerapi.MachineIdle, m.State, "the withdrawn lease is returned")
		assert.Equal(t, []string{"dm-1"}, w.list(&w.sleeps))
	}, 5*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 1)}, time.Hour)
	assert.Len(t, w.creates, 1, "no machine for a withdrawn request")
}

// Queue places and leases of jobs whose RunnerJob is no longer running
// (terminated, reset away, timed out) expire at the next liveness check,
// unless GitHub says the machine's runner is running a job.
func TestPoolLeaseOfClosedJobExpires(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() {
		acq.job(env, 1)
		acq.job(env, 3)
	}, 0)
	env.RegisterDelayedCallback(func() { acq.job(env, 2) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, []int64{2}, inventory(t, env).Queue)
		w.mu.Lock()
		w.goneJobs = map[int64]bool{1: true, 2: true, 3: true}
		w.busyRunners = map[string]bool{runnerapi.RunnerName("linux", 3, 1): true}
		w.mu.Unlock()
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Empty(t, inv.Queue, "job 2's place expired")
		assert.Equal(t, 1, inv.Counts[runnerapi.MachineIdle], "job 1's machine returned")
		assert.Equal(t, 1, inv.Counts[runnerapi.MachineBusy], "job 3's runner is running a job: kept")
		acq.mu.Lock()
		requireWithdrawn(t, acq.errs[2])
		acq.mu.Unlock()
	}, 3*leaseCheckEvery)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 2)}, time.Hour)
	require.NotZero(t, w.checkCount(), "the liveness check ran")
	assert.Len(t, w.creates, 2)
}

// The liveness check runs every lease_check_every of the pool's
// configuration: with 10s, a gone job's place expires within a minute,
// well before the default interval.
func TestPoolLeaseCheckEveryIsConfigured(t *testing.T) {
	live := testPool(0, 1)
	live.LeaseCheckEvery = previewspec.Duration(10 * time.Second)
	env, w := newPoolEnv(t, func(w *poolWorld) { w.config = &live })
	acq := newAcquires()
	env.RegisterDelayedCallback(func() {
		acq.job(env, 1)
		acq.job(env, 2)
	}, 0)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, []int64{2}, inventory(t, env).Queue)
		w.mu.Lock()
		w.goneJobs = map[int64]bool{2: true}
		w.mu.Unlock()
	}, 5*time.Second)
	env.RegisterDelayedCallback(func() {
		assert.Empty(t, inventory(t, env).Queue, "job 2's place expired at a 10s check")
		acq.mu.Lock()
		requireWithdrawn(t, acq.errs[2])
		acq.mu.Unlock()
	}, time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 1)}, 2*time.Minute)
	require.NotZero(t, w.checkCount(), "the liveness check ran")
	assert.Less(t, time.Minute, leaseCheckEvery, "the default would not have checked yet")
}

// The pool reads its configuration at each run start: the machine size
// and bounds of RUNNER_POOLS as it is now, not as it was at the pool's
// first start; a carried resize stands unless the configuration changed
// that bound. A reconfigure signal reads it again.
func TestPoolReadsLiveConfiguration(t *testing.T) {
	live := testPool(1, 3)
	live.Machine = pools.Machine{VCPU: 8}
	env, w := newPoolEnv(t, func(w *poolWorld) { w.config = &live })
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Equal(t, 1, inv.MinIdle)
		assert.Equal(t, 3, inv.MaxMachines)
	}, time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 2)}, time.Hour)
	require.Len(t, w.specs, 1, "min_idle 1 from the live configuration")
	assert.Equal(t, 8.0, w.specs[0].VCPU)
	require.Len(t, w.children, 1)
	assert.Equal(t, 8.0, w.children[0].Pool.Machine.VCPU)

	// A continued run: min_idle was resized to 2 (the configuration still
	// says 0: the resize stands); max_machines was edited from 2 to 5.
	live = testPool(0, 5)
	env, _ = newPoolEnv(t, func(w *poolWorld) { w.config = &live })
	in := runnerapi.PoolInput{Pool: testPool(0, 2), Carry: &runnerapi.PoolCarry{Seq: 1, MinIdle: 2, MaxMachines: 2}}
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Equal(t, 2, inv.MinIdle, "the resize stands")
		assert.Equal(t, 5, inv.MaxMachines, "the configuration's edit wins")
		live.MaxMachines = 1
		env.SignalWorkflow(runnerapi.SignalReconfigure, runnerapi.ReconfigureRequest{})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Equal(t, 1, inv.MaxMachines, "reconfigured")
		assert.Equal(t, 2, inv.MinIdle)
		assert.LessOrEqual(t, len(inv.Machines), 1)
	}, 2*time.Minute)
	runPool(t, env, in, time.Hour)
}

// Continue-as-new does not wait for provisioning children: their slots are
// carried, and the child's report reaches the next run.
func TestPoolContinueAsNewDoesNotWaitForProvisioning(t *testing.T) {
	env, w := newPoolEnv(t, func(w *poolWorld) { w.setupTakes = 20 * time.Minute })
	acq := newAcquires()
	env.RegisterDelayedCallback(func() { acq.job(env, 1) }, 0)
	env.RegisterDelayedCallback(func() {
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(runnerapi.SignalResize, runnerapi.ResizeRequest{})
	}, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerPoolName, runnerapi.PoolInput{Pool: testPool(0, 1)})
	next := continuedAsNew[runnerapi.PoolInput](t, env, runnerapi.RunnerPoolName)
	require.NotNil(t, next.Carry)
	require.Len(t, next.Carry.Machines, 1)
	slot := next.Carry.Machines[0]
	assert.Equal(t, runnerapi.MachineProvisioning, slot.State, "carried while its child works on")
	assert.Equal(t, runnerapi.ProvisionWorkflowID("linux", 1), slot.Provision)
	assert.Equal(t, "dm-1", slot.MachineID)
	assert.Equal(t, []runnerapi.AcquireRequest{{Repo: testRepo, JobID: 1, Attempt: 1}}, next.Carry.Queue)
	require.Len(t, w.children, 1)
	assert.True(t, w.children[0].Report, "the child reports by signal")

	env2, w2 := newPoolEnv(t)
	acq2 := newAcquires()
	env2.RegisterDelayedCallback(func() { acq2.job(env2, 1) }, time.Second)
	env2.RegisterDelayedCallback(func() {
		inv := inventory(t, env2)
		assert.Equal(t, 1, inv.Counts[runnerapi.MachineProvisioning])
		assert.Equal(t, []int64{1}, inv.Queue, "the slot counts: nothing more is provisioned")
		env2.SignalWorkflow(runnerapi.SignalMachineProvisioned, runnerapi.MachineProvisioned{Provision: slot.Provision, MachineID: "dm-1", Awake: true})
	}, 10*time.Second)
	env2.RegisterDelayedCallback(func() {
		l, ok := acq2.lease(1)
		require.True(t, ok)
		assert.Equal(t, runnerapi.Lease{MachineID: "dm-1", RunnerName: runnerapi.RunnerName("linux", 1, 1), Fresh: true}, l)
	}, 20*time.Second)
	runPool(t, env2, next, time.Hour)
	assert.Empty(t, w2.creates)
}

// A machine carried with a pending sleep is put to sleep by the next run.
func TestPoolCarriesPendingSleep(t *testing.T) {
	env, w := newPoolEnv(t)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	in := runnerapi.PoolInput{Pool: testPool(0, 2), Carry: &runnerapi.PoolCarry{Seq: 1, MaxMachines: 2, Machines: []runnerapi.PoolMachine{
		{MachineID: "dm-1", State: runnerapi.MachineIdle, Since: at, WokeAt: at, NeedsSleep: true},
	}}}
	runPool(t, env, in, time.Hour)
	assert.Equal(t, []string{"dm-1"}, w.list(&w.sleeps))
}

// An acquire from a worker with another configuration than the pool's
// makes the pool read it again before serving the job: a changed
// RUNNER_POOLS reaches a running pool with its next job.
func TestPoolAcquireWithNewConfigurationReconfigures(t *testing.T) {
	live := testPool(0, 1)
	env, w := newPoolEnv(t, func(w *poolWorld) { w.config = &live })
	acq := newAcquires()
	env.RegisterDelayedCallback(func() {
		w.mu.Lock()
		live.Machine = pools.Machine{VCPU: 16}
		w.mu.Unlock()
		acq.send(env, runnerapi.AcquireUpdateID(1, 1), runnerapi.AcquireRequest{Repo: testRepo, JobID: 1, Attempt: 1, Config: runnerapi.ConfigFingerprint(live)})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		_, ok := acq.lease(1)
		require.True(t, ok)
	}, 2*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 1)}, time.Hour)
	require.Len(t, w.specs, 1)
	assert.Equal(t, 16.0, w.specs[0].VCPU, "the machine has the new size")
}

// A reporting RunnerProvision tells its pool by workflow ID; with no pool
// left to take the new machine, it deletes it.
func TestProvisionReportsToThePool(t *testing.T) {
	for _, poolGone := range []bool{false, true} {
		env, w := newPoolEnv(t)
		var reports []runnerapi.MachineProvisioned
		env.OnSignalExternalWorkflow(mock.Anything, runnerapi.PoolWorkflowID("linux"), "", runnerapi.SignalMachineProvisioned, mock.Anything).Return(
			func(_, _, _, _ string, arg any) error {
				reports = append(reports, arg.(runnerapi.MachineProvisioned))
				if poolGone {
					return &temporal.UnknownExternalWorkflowExecutionError{}
				}
				return nil
			})
		env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: runnerapi.ProvisionWorkflowID("linux", 3)})
		env.ExecuteWorkflow(runnerapi.RunnerProvisionName, runnerapi.ProvisionInput{Pool: testPool(0, 1), Seq: 3, KeepAwake: true, Report: true})
		require.Len(t, reports, 1)
		assert.Equal(t, runnerapi.MachineProvisioned{Provision: runnerapi.ProvisionWorkflowID("linux", 3), MachineID: "dm-3", Awake: true}, reports[0])
		if poolGone {
			require.Error(t, env.GetWorkflowError())
			assert.Equal(t, []string{"dm-3"}, w.list(&w.deletes), "nobody owns it: deleted")
		} else {
			require.NoError(t, env.GetWorkflowError())
			assert.Empty(t, w.list(&w.deletes))
		}
	}
}

// A carried provisioning slot whose child closed without reporting is
// given up after two liveness checks: its machine, if it made one, is
// deleted (nobody was told about it), and the slot frees.
func TestPoolCarriedSlotOfClosedChildIsGivenUp(t *testing.T) {
	env, w := newPoolEnv(t, func(w *poolWorld) {
		w.closedChildren = map[string]bool{runnerapi.ProvisionWorkflowID("linux", 1): true, runnerapi.ProvisionWorkflowID("linux", 2): true}
	})
	since := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	in := runnerapi.PoolInput{Pool: testPool(0, 2), Carry: &runnerapi.PoolCarry{Seq: 2, MaxMachines: 2, Machines: []runnerapi.PoolMachine{
		{MachineID: "dm-1", State: runnerapi.MachineProvisioning, Provision: runnerapi.ProvisionWorkflowID("linux", 1), Since: since},
		{State: runnerapi.MachineProvisioning, Provision: runnerapi.ProvisionWorkflowID("linux", 2), Since: since},
	}}}
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, 2, inventory(t, env).Counts[runnerapi.MachineProvisioning], "seen closed once: kept")
	}, leaseCheckEvery+time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Empty(t, inv.Machines, "seen closed twice: given up")
	}, 3*leaseCheckEvery)
	runPool(t, env, in, time.Hour)
	assert.Equal(t, []string{"dm-1"}, w.list(&w.deletes))
	assert.Empty(t, w.creates)
}

// The chaos run's defect, end to end in the pool: job 21 leases dm-1;
// dm-1's persistent runner runs the queued jobs 27 and 22 in turn (each
// RunnerJob reports the start, the completion, and gives up its place);
// then job 21 completes on dm-1's runner, or on dm-2's (leased to job 23)
// followed by its own release. Nothing is left for 21, 27 or 22, and dm-1
// is free once its runner is idle, never before.
func TestPoolPersistentQueuedJobsRunOnALeasedMachine(t *testing.T) {
	for _, elsewhere := range []bool{false, true} {
		name := map[bool]string{false: "A on its own machine", true: "A on another machine"}[elsewhere]
		t.Run(name, func(t *testing.T) { runPersistentQueuedJobs(t, elsewhere) })
	}
}

// runPersistentQueuedJobs runs TestPoolPersistentQueuedJobsRunOnALeasedMachine's
// scenario; elsewhere: job 21 completes on dm-2's runner.
func runPersistentQueuedJobs(t *testing.T, elsewhere bool) {
	env, w := newPoolEnv(t)
	p := testPool(0, 2)
	p.Mode = pools.ModePersistent
	acq := newAcquires()
	runner := func(id string) string { return runnerapi.PersistentRunnerName("linux", id) }
	signal := func(name string, arg any) { env.SignalWorkflow(name, arg) }
	var l21, l23 runnerapi.Lease
	env.RegisterDelayedCallback(func() {
		acq.job(env, 21)
		acq.job(env, 23)
	}, 0)
	env.RegisterDelayedCallback(func() {
		acq.job(env, 27)
		acq.job(env, 22)
	}, 30*time.Second)
	at := time.Minute
	for _, j := range []int64{27, 22} {
		env.RegisterDelayedCallback(func() {
			var ok bool
			l21, ok = acq.lease(21)
			require.True(t, ok)
			l23, _ = acq.lease(23)
			signal(runnerapi.SignalRunnerStarted, runnerapi.RunnerStarted{JobID: j, RunnerName: runner(l21.MachineID)})
		}, at)
		env.RegisterDelayedCallback(func() {
			signal(runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: runner(l21.MachineID), JobID: j, Reason: "job completed"})
			signal(runnerapi.SignalWithdraw, runnerapi.WithdrawRequest{JobID: j, Attempt: 1, Reason: "job completed before a machine was leased"})
		}, at+10*time.Second)
		env.RegisterDelayedCallback(func() {
			inv := inventory(t, env)
			m, _ := machineByID(inv, l21.MachineID)
			assert.Equal(t, runnerapi.MachineBusy, m.State, "after job %d", j)
			assert.Equal(t, int64(21), m.JobID, "after job %d: still leased to job 21", j)
			assert.NotContains(t, inv.Queue, j)
			assert.Empty(t, w.list(&w.sleeps))
		}, at+20*time.Second)
		at += time.Minute
	}
	env.RegisterDelayedCallback(func() {
		if !elsewhere {
			signal(runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: runner(l21.MachineID), JobID: 21, Reason: "job completed"})
			return
		}
		signal(runnerapi.SignalRunnerStarted, runnerapi.RunnerStarted{JobID: 21, RunnerName: runner(l23.MachineID)})
		signal(runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: runner(l23.MachineID), JobID: 21, Reason: "job completed"})
		signal(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: l21.MachineID, RunnerName: l21.RunnerName, JobID: 21, Attempt: 1, Reason: "job ran on another runner"})
	}, at)
	env.RegisterDelayedCallback(func() { assertQueuedJobsSettled(t, env, w, acq, l21, l23) }, at+time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: p}, time.Hour)
}

// assertQueuedJobsSettled: nothing is left for jobs 21, 27 and 22; l21's
// machine is free (and asleep), l23's still leased to job 23.
func assertQueuedJobsSettled(t *testing.T, env *testsuite.TestWorkflowEnvironment, w *poolWorld, acq *acquires, l21, l23 runnerapi.Lease) {
	t.Helper()
	inv := inventory(t, env)
	assert.Empty(t, inv.Queue)
	for _, m := range inv.Machines {
		assert.NotContains(t, []int64{21, 27, 22}, m.JobID, "%s keeps a lease", m.MachineID)
		assert.NotContains(t, []int64{21, 27, 22}, m.RunningJob, "%s's runner counted busy", m.MachineID)
	}
	m21, _ := machineByID(inv, l21.MachineID)
	assert.Equal(t, runnerapi.MachineIdle, m21.State, "its runner is idle: free")
	assert.Equal(t, []string{l21.MachineID}, w.list(&w.sleeps))
	m23, _ := machineByID(inv, l23.MachineID)
	assert.Equal(t, runnerapi.MachineBusy, m23.State)
	assert.Equal(t, int64(23), m23.JobID, "job 23 has not run yet")
	acq.mu.Lock()
	requireWithdrawn(t, acq.errs[27])
	requireWithdrawn(t, acq.errs[22])
	acq.mu.Unlock()
}
