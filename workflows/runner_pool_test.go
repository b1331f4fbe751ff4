package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// poolWorld records what the mocked activities were asked to do. Machine
// IDs follow the provisioning child's sequence number (dm-<seq>), so they do
// not depend on the order concurrent activities run in.
type poolWorld struct {
	mu      sync.Mutex
	env     *testsuite.TestWorkflowEnvironment
	creates []time.Time // when CreateMachine was called
	specs   []activities.MachineSpec
	setups  []string
	// setupConfigs: the configuration each setup was given.
	setupConfigs []*pools.Pool
	registers    []activities.RegisterInput
	sleeps       []string
	wakes        []string
	deletes      []string
	children     []runnerapi.ProvisionInput
	// failCreate / failSetup, if set, fail the n-th call (1-based) when they return true.
	failCreate   func(n int) bool
	failSetup    func(n int) bool
	failRegister bool
	setupTakes   time.Duration // of workflow time
	// metrics, if set, receives the workflows' metrics.
	metrics *metricsCapture
	// phases is each machine as Dedalus would answer: its phase and when
	// it entered it (mocked time).
	phases map[string]activities.MachineRef
	// config, if set, is the pool's live configuration (PoolConfig);
	// unset, the pool is unknown to the worker and keeps its input.
	config *pools.Pool
	// goneJobs are jobs whose RunnerJob is closed; busyRunners runners
	// GitHub reports busy (CheckLeaseHolders); checks counts the checks.
	goneJobs    map[int64]bool
	busyRunners map[string]bool
	checks      []activities.LeaseCheckInput
	// closedChildren are provisioning children no longer running.
	closedChildren map[string]bool
}

// moveTo puts machine id in phase now and returns what it was and is.
// Callers hold w.mu.
func (w *poolWorld) moveTo(id string, phase dedalus.MachinePhase) activities.MachineRef {
	if w.phases == nil {
		w.phases = map[string]activities.MachineRef{}
	}
	cur := w.phases[id]
	ref := activities.MachineRef{MachineID: id, WasPhase: cur.Phase, WasTransitionAt: cur.TransitionAt}
	if cur.Phase != phase {
		cur = activities.MachineRef{MachineID: id, Phase: phase, TransitionAt: w.env.Now()}
		w.phases[id] = cur
	}
	ref.Phase, ref.TransitionAt = cur.Phase, cur.TransitionAt
	return ref
}

// wakeAsJob wakes a leased machine as its RunnerJob would, and returns what
// the job tells the pool.
func (w *poolWorld) wakeAsJob(id string) runnerapi.MachineObserved {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.moveTo(id, dedalus.PhaseRunning)
	return runnerapi.MachineObserved{MachineID: id, WasPhase: r.WasPhase, WasTransitionAt: r.WasTransitionAt, Phase: r.Phase, TransitionAt: r.TransitionAt}
}

func (w *poolWorld) list(l *[]string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), *l...)
}

// checkCount is how many lease liveness checks ran (an activity may still
// be writing when the test reads).
func (w *poolWorld) checkCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.checks)
}

func newPoolEnv(t *testing.T, opts ...func(*poolWorld)) (*testsuite.TestWorkflowEnvironment, *poolWorld) {
	t.Helper()
	w := &poolWorld{}
	for _, o := range opts {
		o(w)
	}
	var s testsuite.WorkflowTestSuite
	if w.metrics != nil {
		s.SetMetricsHandler(w.metrics)
	}
	env := s.NewTestWorkflowEnvironment()
	w.env = env
	env.RegisterWorkflowWithOptions(RunnerPool, workflow.RegisterOptions{Name: runnerapi.RunnerPoolName})
	env.RegisterWorkflowWithOptions(RunnerProvision, workflow.RegisterOptions{Name: runnerapi.RunnerProvisionName})
	env.RegisterActivity(&activities.Machines{})
	env.RegisterActivity(&activities.Runners{})

	env.SetOnChildWorkflowStartedListener(func(_ *workflow.Info, _ workflow.Context, args converter.EncodedValues) {
		var in runnerapi.ProvisionInput
		if args.Get(&in) == nil {
			w.mu.Lock()
			w.children = append(w.children, in)
			w.mu.Unlock()
		}
	})
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: runnerapi.PoolWorkflowID("linux")})
	env.OnActivity(runnerActs.PoolConfig, mock.Anything, mock.Anything).Return(
		func(_ context.Context, name string) (pools.Pool, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.config == nil {
				return pools.Pool{}, temporal.NewNonRetryableApplicationError("unknown runner pool "+name, activities.ErrTypeUnknownPool, nil)
			}
			return *w.config, nil
		})
	env.OnActivity(runnerActs.CheckLeaseHolders, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.LeaseCheckInput) (activities.LeaseCheckResult, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.checks = append(w.checks, in)
			var res activities.LeaseCheckResult
			for _, h := range in.Holders {
				if w.goneJobs[h.JobID] && !w.busyRunners[h.RunnerName] {
					res.Gone = append(res.Gone, h)
				}
			}
			for _, id := range in.Provisions {
				if w.closedChildren[id] {
					res.ProvisionsClosed = append(res.ProvisionsClosed, id)
				}
			}
			return res, nil
		})
	env.OnActivity(machineActs.CreateMachine, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, spec activities.MachineSpec) (activities.MachineRef, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.creates = append(w.creates, env.Now())
			w.specs = append(w.specs, spec)
			if w.failCreate != nil && w.failCreate(len(w.creates)) {
				return activities.MachineRef{}, temporal.NewNonRetryableApplicationError("quota exceeded", activities.ErrTypeRejected, nil)
			}
			// runner-provision:<pool>:<seq> makes dm-<seq>.
			id := activity.GetInfo(ctx).WorkflowExecution.ID
			ref := w.moveTo("dm-"+id[strings.LastIndex(id, ":")+1:], dedalus.PhaseRunning)
			ref.WasPhase, ref.WasTransitionAt = "", time.Time{}
			return ref, nil
		})
	env.OnActivity(runnerActs.SetupMachine, mock.Anything, mock.Anything).After(w.setupTakes).Return(
		func(_ context.Context, in activities.SetupMachineInput) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.setups = append(w.setups, in.MachineID)
			w.setupConfigs = append(w.setupConfigs, in.Config)
			if w.failSetup != nil && w.failSetup(len(w.setups)) {
				return temporal.NewNonRetryableApplicationError("setup[0] tools: exit 1", activities.ErrTypeCommandFailed, nil)
			}
			return nil
		})
	env.OnActivity(runnerActs.RegisterPersistent, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RegisterInput) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.registers = append(w.registers, in)
			if w.failRegister {
				return temporal.NewNonRetryableApplicationError("registration token refused", "GitHubRejected", nil)
			}
			return nil
		})
	env.OnActivity(machineActs.SleepMachine, mock.Anything, mock.Anything).Return(
		func(_ context.Context, id string) (activities.MachineRef, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.sleeps = append(w.sleeps, id)
			ref := w.moveTo(id, dedalus.PhaseSleeping)
			ref.WasPhase, ref.WasTransitionAt = "", time.Time{}
			return ref, nil
		})
	env.OnActivity(machineActs.WakeMachine, mock.Anything, mock.Anything).Return(
		func(_ context.Context, id string) (activities.MachineRef, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.wakes = append(w.wakes, id)
			return w.moveTo(id, dedalus.PhaseRunning), nil
		})
	env.OnActivity(machineActs.DeleteMachine, mock.Anything, mock.Anything).Return(
		func(_ context.Context, id string) (activities.MachineRef, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.deletes = append(w.deletes, id)
			return w.moveTo(id, dedalus.PhaseDestroyed), nil
		})
	return env, w
}

func testPool(minIdle, maxMachines int) pools.Pool {
	// Isolation shared: the pool mechanics these tests check (their
	// releases name no repository); runner_pool_isolation_test.go checks
	// the isolation modes.
	return pools.Pool{Name: "linux", Labels: []string{"self-hosted", "linux"}, MinIdle: minIdle, MaxMachines: maxMachines, Mode: pools.ModeJIT,
		Isolation: pools.IsolationShared}
}

// acquires records the outcome of acquire updates, by job ID.
type acquires struct {
	mu       sync.Mutex
	leases   map[int64]runnerapi.Lease
	errs     map[int64]error
	rejected map[int64]error
	order    []int64 // jobs in the order their leases were returned
}

func newAcquires() *acquires {
	return &acquires{leases: map[int64]runnerapi.Lease{}, errs: map[int64]error{}, rejected: map[int64]error{}}
}

func (a *acquires) send(env *testsuite.TestWorkflowEnvironment, updateID string, req runnerapi.AcquireRequest) {
	env.UpdateWorkflow(runnerapi.UpdateAcquire, updateID, &testsuite.TestUpdateCallback{
		OnReject: func(err error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.rejected[req.JobID] = err
		},
		OnAccept: func() {},
		OnComplete: func(v any, err error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			if err != nil {
				a.errs[req.JobID] = err
				return
			}
			a.leases[req.JobID] = v.(runnerapi.Lease)
			a.order = append(a.order, req.JobID)
		},
	}, req)
}

func (a *acquires) job(env *testsuite.TestWorkflowEnvironment, jobID int64) {
	a.send(env, runnerapi.AcquireUpdateID(jobID, 1), runnerapi.AcquireRequest{Repo: testRepo, JobID: jobID, Attempt: 1})
}

func (a *acquires) lease(jobID int64) (runnerapi.Lease, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.leases[jobID]
	return l, ok
}

func inventory(t *testing.T, env *testsuite.TestWorkflowEnvironment) runnerapi.Inventory {
	t.Helper()
	v, err := env.QueryWorkflow(runnerapi.QueryInventory)
	require.NoError(t, err)
	var inv runnerapi.Inventory
	require.NoError(t, v.Get(&inv))
	return inv
}

func machineByID(inv runnerapi.Inventory, id string) (runnerapi.PoolMachine, bool) {
	for _, m := range inv.Machines {
		if m.MachineID == id {
			return m, true
		}
	}
	return runnerapi.PoolMachine{}, false
}

// runPool runs a pool until end, then cancels it (a pool never completes
// on its own).
func runPool(t *testing.T, env *testsuite.TestWorkflowEnvironment, in runnerapi.PoolInput, end time.Duration) {
	t.Helper()
	env.RegisterDelayedCallback(env.CancelWorkflow, end)
	env.ExecuteWorkflow(runnerapi.RunnerPoolName, in)
	require.True(t, env.IsWorkflowCompleted())
	err := env.GetWorkflowError()
	var ce *temporal.CanceledError
	require.True(t, errors.As(err, &ce), "the pool ran until cancelled: %v", err)
}

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

func intp(n int) *int { return &n }

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
	assert.False(t, w.children[0].KeepAwake, "min_idle machines are put to sleep")
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
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "%v", err)
	assert.Equal(t, runnerapi.RunnerPoolName, can.WorkflowType.Name)
	var next runnerapi.PoolInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
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

	// The next run: a release that arrived during the handover is applied
	// first, and its machine is kept for job 3 (first in line) although job
	// 4 comes back first.
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
	awake := func(inv runnerapi.Inventory) float64 {
		pm, ok := machineByID(inv, "dm-1")
		require.True(t, ok)
		return pm.AwakeSeconds
	}
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
	// Released at 40m: the pool puts it to sleep.
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

// Machines provisioned for min_idle run from their create until the
// provisioning child put them to sleep; the accounting survives
// continue-as-new.
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
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "%v", env.GetWorkflowError())
	var next runnerapi.PoolInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
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

// testRepo is the repository of the pool tests' jobs (isolation per-repo:
// one repository's jobs reuse its machines).
const testRepo = "acme/shop"
