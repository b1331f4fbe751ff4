package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// The pool accounts each machine's awake time from what it and its jobs
// observe: a provisioning's create, a job's wake (signalled by the job),
// the pool's own sleeps, prewarm wakes and deletes. Deleted machines stay
// in the pool's total, and the counter follows the closed intervals.
func TestPoolAwakeAccounting(t *testing.T) {
	m := newMetricsCapture()
	env, w := newPoolEnv(t, func(w *poolWorld) {
		w.setupTakes = 10 * time.Minute
		w.metrics = m
	})
	acq := newAcquires()
	var begin time.Time
	awake := func(inv runnerapi.Inventory) float64 { return machineAwake(t, inv, "dm-1") }
	env.RegisterDelayedCallback(func() {
		begin = env.Now()
		acq.job(env, 1) // provisions dm-1 for it, awake from its create
	}, 0)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(1)
		require.True(t, ok)
		assert.True(t, l.Fresh)
		// The job wakes the running machine: nothing changes.
		env.SignalWorkflow(runnerapi.SignalMachineObserved, w.wakeAsJob("dm-1"))
		inv := inventory(t, env)
		assert.Equal(t, (11 * time.Minute).Seconds(), awake(inv), "running since its create")
		assert.Equal(t, (11 * time.Minute).Seconds(), inv.AwakeSeconds)
		assert.True(t, inv.AwakeAsOf.Equal(begin.Add(11*time.Minute)))
	}, 11*time.Minute)
	sleepThenWakeForJob2(t, env, w, acq)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, (44 * time.Minute).Seconds(), awake(inventory(t, env)), "40m, then 4m for job 2")
		env.SignalWorkflow(runnerapi.SignalPrewarm, runnerapi.PrewarmRequest{Count: 1})
	}, 60*time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Equal(t, (54 * time.Minute).Seconds(), awake(inv), "and 10m since the prewarm")
		assert.Equal(t, (54 * time.Minute).Seconds(), inv.AwakeSeconds)
		env.SignalWorkflow(runnerapi.SignalDrain, runnerapi.DrainRequest{})
	}, 70*time.Minute)
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		assert.Empty(t, inv.Machines)
		assert.Equal(t, (54 * time.Minute).Seconds(), inv.AwakeSeconds, "the deleted machine stays in the pool's total")
		// A late observation of a machine the pool no longer has is ignored.
		env.SignalWorkflow(runnerapi.SignalMachineObserved, runnerapi.MachineObserved{MachineID: "dm-1", Phase: dedalus.PhaseRunning, TransitionAt: env.Now()})
	}, 80*time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, (54 * time.Minute).Seconds(), inventory(t, env).AwakeSeconds)
	}, 81*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(0, 2)}, 2*time.Hour)

	assert.Equal(t, []string{"dm-1"}, w.list(&w.wakes), "the prewarm; the jobs' wakes are theirs")
	assert.Equal(t, []int64{40 * 60, 4 * 60, 10 * 60}, counts(m.named(MetricPoolAwake)))
	assert.Equal(t, int64(54*60), m.sum(MetricPoolAwake))
	for _, e := range m.named(MetricPoolAwake) {
		assert.Equal(t, "linux", e.tags["pool"])
	}
	assert.Len(t, m.tagKeys(MetricPoolAwake), 1, "one tag key set per metric name")
}

// machineAwake is machine id's awake seconds in inv.
func machineAwake(t *testing.T, inv runnerapi.Inventory, id string) float64 {
	t.Helper()
	pm, ok := machineByID(inv, id)
	require.True(t, ok)
	return pm.AwakeSeconds
}

// sleepThenWakeForJob2: job 1 releases dm-1 at 40m (the pool puts it to
// sleep); job 2, asking at 45m, wakes it at 46m and releases it at 50m.
func sleepThenWakeForJob2(t *testing.T, env *testsuite.TestWorkflowEnvironment, w *poolWorld, acq *acquires) {
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: "dm-1", JobID: 1})
	}, 40*time.Minute)
	env.RegisterDelayedCallback(func() { acq.job(env, 2) }, 45*time.Minute)
	env.RegisterDelayedCallback(func() {
		_, ok := acq.lease(2)
		require.True(t, ok)
		// Job 2 wakes the sleeping machine and tells the pool.
		env.SignalWorkflow(runnerapi.SignalMachineObserved, w.wakeAsJob("dm-1"))
	}, 46*time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: "dm-1", JobID: 2})
	}, 50*time.Minute)
}

// Machines provisioned for min_idle run from their create until they are
// put to sleep (by the pool, or before runnerPoolProvisionAwakeVersion by
// the provisioning child); the accounting survives continue-as-new.
func TestPoolAwakeAccountingCarriedOverContinueAsNew(t *testing.T) {
	m := newMetricsCapture()
	env, w := newPoolEnv(t, func(w *poolWorld) {
		w.setupTakes = 90 * time.Second
		w.metrics = m
	})
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		require.Len(t, inv.Machines, 1)
		assert.Equal(t, 90.0, inv.Machines[0].AwakeSeconds, "set up, then put to sleep")
		assert.False(t, inv.Machines[0].Awake.Awake())
		w.mu.Lock()
		w.moveTo("dm-1", dedalus.PhaseRunning) // woken behind the pool's back, observed at the next wake
		w.mu.Unlock()
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(runnerapi.SignalMachineObserved, w.wakeAsJob("dm-1"))
	}, 10*time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerPoolName, runnerapi.PoolInput{Pool: testPool(1, 2)})
	next := continuedAsNew[runnerapi.PoolInput](t, env, runnerapi.RunnerPoolName)
	c := next.Carry
	require.NotNil(t, c)
	assert.Equal(t, 90*time.Second, c.AwakeClosed)
	assert.Equal(t, int64(90), c.AwakeCounted)
	require.Len(t, c.Machines, 1)
	assert.True(t, c.Machines[0].Awake.Awake(), "the observation drained at the handover is carried")
	assert.Equal(t, int64(90), m.sum(MetricPoolAwake))

	// The next run goes on from there: deleting the machine closes its
	// interval, and the pool's total and counter continue.
	m2 := newMetricsCapture()
	env2, _ := newPoolEnv(t, func(w *poolWorld) { w.metrics = m2 })
	env2.SetStartTime(env.Now())
	env2.RegisterDelayedCallback(func() {
		assert.Equal(t, (90*time.Second + 2*time.Minute).Seconds(), inventory(t, env2).AwakeSeconds)
		env2.SignalWorkflow(runnerapi.SignalDrain, runnerapi.DrainRequest{})
	}, 2*time.Minute)
	env2.RegisterDelayedCallback(func() {
		assert.Equal(t, (90*time.Second + 2*time.Minute).Seconds(), inventory(t, env2).AwakeSeconds)
	}, 3*time.Minute)
	runPool(t, env2, next, 10*time.Minute)
	assert.Equal(t, int64(120), m2.sum(MetricPoolAwake), "the seconds of the carried total are not emitted again")
}

// A job that queues while a machine is being set up for min_idle gets that
// machine running when its setup ends: it is not put to sleep first and
// woken again for the job (the platform's sleep and wake, for nothing).
func TestPoolHandsAMinIdleMachineSetUpMeanwhileToAWaitingJobRunning(t *testing.T) {
	env, w := newPoolEnv(t, func(w *poolWorld) { w.setupTakes = 10 * time.Minute })
	acq := newAcquires()
	// dm-1 is being set up for min_idle since the start; job 1 queues.
	env.RegisterDelayedCallback(func() { acq.job(env, 1) }, 5*time.Minute)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(1)
		require.True(t, ok, "job 1 got a machine once dm-1 was set up")
		assert.Equal(t, "dm-1", l.MachineID)
		assert.True(t, l.Fresh, "handed over running")
		assert.NotContains(t, w.list(&w.sleeps), "dm-1", "not put to sleep between its setup and its job")
	}, 11*time.Minute)
	env.RegisterDelayedCallback(func() {
		// dm-2, provisioned for min_idle when job 1 queued (at 5m, set up
		// at 15m), finds no job: the pool puts it to sleep at once.
		assert.Equal(t, []string{"dm-2"}, w.list(&w.sleeps))
		inv := inventory(t, env)
		assert.Equal(t, (10 * time.Minute).Seconds(), machineAwake(t, inv, "dm-2"), "awake from its create to the pool's sleep")
	}, 16*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(1, 3)}, time.Hour)
}

// A pool run from before runnerPoolProvisionAwakeVersion keeps its
// behaviour: a provisioning for min_idle puts its machine to sleep, and a
// job that queued meanwhile gets it asleep (its job wakes it).
func TestPoolBeforeProvisionAwakeTheMinIdleProvisioningSleepsItsMachine(t *testing.T) {
	env, w := newPoolEnv(t, func(w *poolWorld) { w.setupTakes = 10 * time.Minute })
	env.OnGetVersion(runnerPoolProvisionAwakeVersion, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	acq := newAcquires()
	env.RegisterDelayedCallback(func() { acq.job(env, 1) }, 5*time.Minute)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(1)
		require.True(t, ok)
		assert.Equal(t, "dm-1", l.MachineID)
		assert.False(t, l.Fresh, "put to sleep by its provisioning")
		assert.Equal(t, []string{"dm-1"}, w.list(&w.sleeps))
	}, 11*time.Minute)
	runPool(t, env, runnerapi.PoolInput{Pool: testPool(1, 3)}, time.Hour)
	require.Len(t, w.children, 2)
	assert.False(t, w.children[0].KeepAwake || w.children[1].KeepAwake, "min_idle provisionings sleep their machines")
	assert.Equal(t, []string{"dm-1", "dm-2"}, w.list(&w.sleeps))
}
