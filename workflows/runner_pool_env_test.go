package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

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
	env := newWorkflowEnv(w.metrics)
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
	w.mockPoolActivities(env)
	w.mockProvisioning(env)
	w.mockMachineOps(env)
	return env, w
}

// mockPoolActivities mocks the pool's configuration (PoolConfig) and its
// lease liveness check.
func (w *poolWorld) mockPoolActivities(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(runnerActs.PoolConfig, mock.Anything, mock.Anything).Return(
		func(_ context.Context, name string) (pools.Pool, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.config == nil {
				return pools.Pool{}, temporal.NewNonRetryableApplicationError("unknown runner pool "+name, activities.ErrTypeUnknownPool, nil)
			}
			return *w.config, nil
		})
	env.OnActivity(runnerActs.CheckLeaseHolders, mock.Anything, mock.Anything).Return(w.checkLeaseHolders)
}

// checkLeaseHolders answers CheckLeaseHolders: the holders of goneJobs
// (unless GitHub reports their runner busy) and the closedChildren.
func (w *poolWorld) checkLeaseHolders(_ context.Context, in activities.LeaseCheckInput) (activities.LeaseCheckResult, error) {
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
}

// mockProvisioning mocks a provisioning child's activities: the create, the
// setup and the persistent runner's registration.
func (w *poolWorld) mockProvisioning(env *testsuite.TestWorkflowEnvironment) {
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
}

// mockMachineOps mocks the pool's sleeps, wakes and deletes.
func (w *poolWorld) mockMachineOps(env *testsuite.TestWorkflowEnvironment) {
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
}

func testPool(minIdle, maxMachines int) pools.Pool {
	// Isolation shared: the pool mechanics these tests check (their
	// releases name no repository); runner_pool_isolation_test.go checks
	// the isolation modes.
	return pools.Pool{Name: "linux", Labels: []string{"self-hosted", "linux"}, MinIdle: minIdle, MaxMachines: maxMachines, Mode: pools.ModeJIT,
		Isolation: pools.IsolationShared}
}

// testRepo is the repository of the pool tests' jobs (isolation per-repo:
// one repository's jobs reuse its machines).
const testRepo = "acme/shop"

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

func intp(n int) *int { return &n }
