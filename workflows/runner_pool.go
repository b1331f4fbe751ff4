package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// runnerActs names the runner activities (the worker registers the real struct).
var runnerActs *activities.Runners

const (
	// reservationTTL is how long a run keeps the places (and machines) of
	// requests carried over continue-as-new for their callers to come back.
	reservationTTL = 5 * time.Minute
	// Provisioning backoff after consecutive failures: 10s, 20s, 40s ... 5m.
	provisionBackoffBase = 10 * time.Second
	provisionBackoffMax  = 5 * time.Minute
)

// runnerPoolVersion guards the changes of issue 12 in RunnerPool: live
// configuration, lease liveness checks, provisioning children that report
// by signal and do not hold up continue-as-new, persistent-mode release
// by the runner that ran the job, sleep state carried.
const runnerPoolVersion = "runner-pool-issue-12"

// runnerPoolAccountingVersion guards the persistent-mode accounting of
// runner_pool_persistent.go (a machine is busy while leased or while its
// runner runs a job; leases never move) and the order it needs: a
// runner_started is taken before a release that arrived with it.
const runnerPoolAccountingVersion = "runner-pool-persistent-accounting"

// runnerPoolIsolationVersion guards isolation modes (pools.Pool.Isolation,
// issue 14): each lease records its job's repository on the machine,
// leasing keeps machines to one repository (per-repo) or to one job
// (fresh, deleted after it), and leases are counted by affinity. A pool
// upgraded mid-flight keeps its machines: those that ran jobs before carry
// no repository and are bound to an unknown one (per-repo and fresh never
// lease them again; they are recycled when the pool needs room), those
// that never ran one are free for any repository.
const runnerPoolIsolationVersion = "runner-pool-isolation"

// runnerPoolProvisionAwakeVersion guards new machines coming back awake:
// every provisioning keeps its machine awake (ProvisionInput.KeepAwake),
// and the pool puts it to sleep if no job takes it, as it does a freed
// machine. Before it, a provisioning for min_idle put its machine to sleep
// as its last step, and a job that queued meanwhile then had to wake it:
// the platform's sleep and wake for a machine that was running.
const runnerPoolProvisionAwakeVersion = "runner-pool-provision-awake"

// pool is one RunnerPool run: its state (poolState, which decides) and
// what the run needs to carry the decisions out and to wait.
type pool struct {
	poolState
	backoffTimer workflow.Future
	reserveTimer workflow.Future
	leaseTimer   workflow.Future // next lease liveness check
	checking     bool            // a lease liveness check is running
	kickCh       workflow.Channel
	// reconfigureFor: an acquire came with this configuration fingerprint,
	// not the run's: the main loop reads the configuration again.
	reconfigureFor, reconfiguredFor string
}

// RunnerPool is the entity workflow of one runner pool (ID
// runnerapi.PoolWorkflowID): it owns the pool's machines and leases them to
// jobs through the acquire Update, in strict arrival order.
func RunnerPool(ctx workflow.Context, in runnerapi.PoolInput) error {
	p := newPool(ctx, in)
	_ = workflow.UpsertTypedSearchAttributes(ctx, SearchAttrPool.ValueSet(p.cfg.Name))
	if err := p.setHandlers(ctx); err != nil {
		return err
	}
	if p.v >= 1 {
		// After the handlers: an acquire sent with the pool's start must
		// find its handler while the configuration is read.
		p.startConfig(ctx, in)
	}
	ch := poolChans{
		release:     workflow.GetSignalChannel(ctx, runnerapi.SignalRelease),
		resize:      workflow.GetSignalChannel(ctx, runnerapi.SignalResize),
		drain:       workflow.GetSignalChannel(ctx, runnerapi.SignalDrain),
		prewarm:     workflow.GetSignalChannel(ctx, runnerapi.SignalPrewarm),
		created:     workflow.GetSignalChannel(ctx, runnerapi.SignalMachineCreated),
		observed:    workflow.GetSignalChannel(ctx, runnerapi.SignalMachineObserved),
		withdraw:    workflow.GetSignalChannel(ctx, runnerapi.SignalWithdraw),
		reconfigure: workflow.GetSignalChannel(ctx, runnerapi.SignalReconfigure),
		provisioned: workflow.GetSignalChannel(ctx, runnerapi.SignalMachineProvisioned),
		started:     workflow.GetSignalChannel(ctx, runnerapi.SignalRunnerStarted),
	}
	p.resume(ctx, in)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.reconfigureFor != p.reconfiguredFor {
			p.reconfiguredFor = p.reconfigureFor
			p.reconfigure(ctx)
		}
		p.step(ctx, p.dispatch)
		if !p.winding && workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			p.log.Info("continue-as-new suggested: finishing in-flight provisioning and machine operations")
			p.winding = true
		}
		if p.winding && (p.v >= 1 || p.count(runnerapi.MachineProvisioning) == 0) && !p.shortOpsInFlight() {
			return p.continueAsNew(ctx, in, ch)
		}
		p.armTimers(ctx)
		p.selector(ctx, ch).Select(ctx)
	}
}

// newPool makes a run's state from its input: the carried machines, queue
// and counters (the configuration is read after the handlers are set).
func newPool(ctx workflow.Context, in runnerapi.PoolInput) *pool {
	p := &pool{poolState: poolState{cfg: in.Pool, minIdle: in.Pool.MinIdle, maxMachines: in.Pool.MaxMachines}}
	p.v = workflow.GetVersion(ctx, runnerPoolVersion, workflow.DefaultVersion, 1)
	p.acct = workflow.GetVersion(ctx, runnerPoolAccountingVersion, workflow.DefaultVersion, 1)
	p.iso = workflow.GetVersion(ctx, runnerPoolIsolationVersion, workflow.DefaultVersion, 1)
	p.provAwake = workflow.GetVersion(ctx, runnerPoolProvisionAwakeVersion, workflow.DefaultVersion, 1)
	if p.iso >= 1 {
		p.leases = poolLeaseCounter(ctx, in.Pool.Name)
	}
	if p.maxMachines <= 0 {
		p.maxMachines = pools.DefaultMaxMachines
	}
	p.kickCh = workflow.NewBufferedChannel(ctx, 1)
	p.log = workflow.GetLogger(ctx)
	p.counter = poolAwakeCounter(ctx, in.Pool.Name)
	p.at(ctx)
	if in.Carry != nil {
		p.takeCarry(*in.Carry)
	}
	return p
}

// takeCarry takes over what the previous run handed over.
func (p *poolState) takeCarry(c runnerapi.PoolCarry) {
	p.seq, p.failures = c.Seq, c.ProvisionFailures
	if p.v < 1 {
		p.minIdle, p.maxMachines = c.MinIdle, c.MaxMachines
	}
	p.awakeClosed, p.awakeCounted = c.AwakeClosed, c.AwakeCounted
	for _, m := range c.Machines {
		pm := &poolMachine{PoolMachine: m}
		pm.needsSleep, pm.awake, pm.wokeAt = m.NeedsSleep, !m.WokeAt.IsZero(), m.WokeAt
		pm.NeedsSleep, pm.WokeAt = false, time.Time{}
		if m.State == runnerapi.MachineProvisioning && m.Provision != "" && p.v >= 1 {
			// Its child runs on (abandoned) and reports by signal.
			pm.carried = true
			p.machines = append(p.machines, pm)
			continue
		}
		if m.MachineID == "" {
			continue // a provisioning slot of an older run: never carried (the run waited for its child)
		}
		p.machines = append(p.machines, pm)
	}
	for _, r := range c.Queue {
		p.queue = append(p.queue, &waiter{req: r})
	}
	if p.failures > 0 {
		p.retryAt = p.now.Add(provisionBackoff(p.failures))
	}
}

// setHandlers sets the inventory query and the acquire update.
func (p *pool) setHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, runnerapi.QueryInventory, func() (runnerapi.Inventory, error) {
		return p.inventory(workflow.Now(ctx)), nil
	}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, runnerapi.UpdateAcquire, p.acquire, workflow.UpdateHandlerOptions{
		Validator: func(req runnerapi.AcquireRequest) error {
			if req.JobID <= 0 || req.Attempt < 1 {
				return temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("acquire needs a job ID and an attempt >= 1 (got job %d attempt %d)", req.JobID, req.Attempt),
					runnerapi.ErrTypeInvalidAcquire, nil)
			}
			if p.canning {
				return errContinuingAsNew()
			}
			if p.wasWithdrawn(req) {
				return errWithdrawnAcquire(req)
			}
			return nil
		},
	})
}

// resume redoes what the previous run left unfinished: machines whose
// deletion it had started are deleted again (deleting is idempotent),
// carried places are held for a while, and carried signals apply before
// anything else.
func (p *pool) resume(ctx workflow.Context, in runnerapi.PoolInput) {
	p.step(ctx, p.resumeMachines)
	if p.holdsCarriedPlaces() {
		p.reserveTimer = workflow.NewTimerWithOptions(ctx, reservationTTL, workflow.TimerOptions{Summary: "hold carried requests' places"})
	}
	if in.Carry != nil {
		for _, s := range in.Carry.Pending {
			p.apply(ctx, s)
		}
	}
}

// resumeMachines deletes again the machines the previous run was deleting,
// and takes machines carried waking or provisioning (by an older run) as
// idle.
func (p *poolState) resumeMachines() {
	for _, m := range p.machines {
		if m.State == runnerapi.MachineBroken || (m.State == runnerapi.MachineDraining && m.JobID == 0 && m.RunningJob == 0) {
			p.markDelete(m, "resume delete")
		}
		if m.State == runnerapi.MachineWaking || (m.State == runnerapi.MachineProvisioning && !m.carried) {
			// Never carried (the run waits for wakes and children); tolerated as idle.
			m.State = runnerapi.MachineIdle
		}
	}
}

// holdsCarriedPlaces: carried queue places or reserved leases wait for
// their callers to come back.
func (p *poolState) holdsCarriedPlaces() bool {
	return len(p.queue) > 0 || slices.ContainsFunc(p.machines, func(m *poolMachine) bool { return m.Reserved })
}

// armTimers starts the lease liveness check's timer and the provisioning
// backoff's, when due.
func (p *pool) armTimers(ctx workflow.Context) {
	if p.v >= 1 && p.leaseTimer == nil && !p.checking && !p.winding && p.holdsForOthers() {
		p.leaseTimer = workflow.NewTimerWithOptions(ctx, p.cfg.LeaseCheckInterval(), workflow.TimerOptions{Summary: "check that lease holders still run"})
	}
	if p.backoffTimer == nil && workflow.Now(ctx).Before(p.retryAt) {
		p.backoffTimer = workflow.NewTimerWithOptions(ctx, p.retryAt.Sub(workflow.Now(ctx)),
			workflow.TimerOptions{Summary: fmt.Sprintf("provisioning backoff after %d failures", p.failures)})
	}
}

// selector waits for the next event: a signal, a kick from a handler or
// coroutine, a timer, or cancellation. The order of the cases is part of
// the workflow's determinism: keep it.
func (p *pool) selector(ctx workflow.Context, ch poolChans) workflow.Selector {
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
	sel.AddReceive(p.kickCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	if p.acct >= 1 {
		// A runner's new job before a release that came with it: a
		// machine whose runner took the next job is never freed.
		receive(ctx, sel, ch.started, func(r runnerapi.RunnerStarted) { p.apply(ctx, runnerapi.PoolSignal{Started: &r}) })
	}
	receive(ctx, sel, ch.release, func(r runnerapi.ReleaseRequest) { p.apply(ctx, runnerapi.PoolSignal{Release: &r}) })
	receive(ctx, sel, ch.resize, func(r runnerapi.ResizeRequest) { p.apply(ctx, runnerapi.PoolSignal{Resize: &r}) })
	receive(ctx, sel, ch.drain, func(r runnerapi.DrainRequest) { p.apply(ctx, runnerapi.PoolSignal{Drain: &r}) })
	receive(ctx, sel, ch.prewarm, func(r runnerapi.PrewarmRequest) { p.apply(ctx, runnerapi.PoolSignal{Prewarm: &r}) })
	receive(ctx, sel, ch.created, func(mc runnerapi.MachineCreated) { p.step(ctx, func() { p.created(mc) }) })
	if p.v >= 1 {
		receive(ctx, sel, ch.withdraw, func(r runnerapi.WithdrawRequest) { p.apply(ctx, runnerapi.PoolSignal{Withdraw: &r}) })
		receive(ctx, sel, ch.provisioned, func(r runnerapi.MachineProvisioned) { p.apply(ctx, runnerapi.PoolSignal{Provisioned: &r}) })
		receive(ctx, sel, ch.reconfigure, func(runnerapi.ReconfigureRequest) { p.reconfigure(ctx) })
		if p.acct < 1 {
			receive(ctx, sel, ch.started, func(r runnerapi.RunnerStarted) { p.apply(ctx, runnerapi.PoolSignal{Started: &r}) })
		}
	}
	receive(ctx, sel, ch.observed, func(o runnerapi.MachineObserved) { p.step(ctx, func() { p.observed(o) }) })
	if p.backoffTimer != nil {
		sel.AddFuture(p.backoffTimer, func(workflow.Future) { p.backoffTimer = nil })
	}
	if p.reserveTimer != nil {
		sel.AddFuture(p.reserveTimer, func(workflow.Future) {
			p.reserveTimer = nil
			p.step(ctx, p.expireReservations)
		})
	}
	if p.leaseTimer != nil {
		sel.AddFuture(p.leaseTimer, func(workflow.Future) {
			p.leaseTimer = nil
			p.startLeaseCheck(ctx)
		})
	}
	return sel
}

// receive adds a case for one signal channel to sel: f gets each value.
func receive[T any](ctx workflow.Context, sel workflow.Selector, c workflow.ReceiveChannel, f func(T)) {
	sel.AddReceive(c, func(c workflow.ReceiveChannel, _ bool) {
		var v T
		c.Receive(ctx, &v)
		f(v)
	})
}

func errContinuingAsNew() error {
	return temporal.NewApplicationError("the runner pool is continuing as new: retry the same update", runnerapi.ErrTypePoolContinuingAsNew)
}

// kick wakes the main loop to dispatch after a handler or a coroutine
// changed the state. One pending kick is enough.
func (p *pool) kick() { p.kickCh.SendAsync(struct{}{}) }

// acquire is the UpdateAcquire handler. Requests wait in one FIFO queue; the
// main loop hands machines to its head. Concurrent calls for one job attempt
// share one place in the queue.
func (p *pool) acquire(ctx workflow.Context, req runnerapi.AcquireRequest) (runnerapi.Lease, error) {
	if m := p.leaseOf(req.JobID, req.Attempt); m != nil {
		// A retried caller re-attaches to its lease (also across continue-as-new).
		m.Reserved = false
		if err := workflow.Await(ctx, func() bool { return opSettled(m) }); err != nil {
			return runnerapi.Lease{}, err
		}
		return runnerapi.Lease{MachineID: m.MachineID, RunnerName: m.RunnerName}, nil
	}
	if p.v >= 1 && req.Config != "" && req.Config != runnerapi.ConfigFingerprint(p.cfg) {
		p.reconfigureFor = req.Config
	}
	w := p.placeOf(req)
	// A carried place is taken again by its caller.
	w.arrived = true
	p.kick()
	if err := workflow.Await(ctx, func() bool { return p.answered(w) }); err != nil {
		return runnerapi.Lease{}, err
	}
	if w.m == nil && w.withdrawn {
		return runnerapi.Lease{}, errWithdrawnAcquire(req)
	}
	if w.m == nil {
		// It keeps its place: the queue is carried to the next run.
		return runnerapi.Lease{}, errContinuingAsNew()
	}
	w.m.Reserved = false
	return runnerapi.Lease{MachineID: w.m.MachineID, RunnerName: w.m.RunnerName, Fresh: w.fresh}, nil
}

// placeOf is the request's place in the queue: the one it has (a retried
// or carried request), or a new one at the end.
func (p *poolState) placeOf(req runnerapi.AcquireRequest) *waiter {
	w := p.waiterOf(req.JobID, req.Attempt)
	if w == nil {
		w = &waiter{req: req}
		p.queue = append(p.queue, w)
	}
	return w
}

// answered: w's acquire can return: its machine is leased and no sleep or
// wake runs on it, or it got none and the pool continues as new or the
// request was withdrawn.
func (p *poolState) answered(w *waiter) bool {
	if w.m != nil {
		return opSettled(w.m)
	}
	return p.canning || w.withdrawn
}

// opSettled: no sleep or wake runs on m (a delete may).
func opSettled(m *poolMachine) bool { return m.op == "" || m.op == opDelete }

// continueAsNew hands the pool to a fresh run: no provisioning child and
// no sleep or wake is in flight (the caller checked). Waiting acquires
// return a retryable error and keep their place in the carried queue;
// deletions in flight are carried (broken/draining) and redone.
func (p *pool) continueAsNew(ctx workflow.Context, in runnerapi.PoolInput, ch poolChans) error {
	p.canning = true
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	p.at(ctx)
	p.drainSignals(ctx, ch)
	carry := &runnerapi.PoolCarry{
		Seq: p.seq, MinIdle: p.minIdle, MaxMachines: p.maxMachines,
		Pending: p.pending, ProvisionFailures: p.failures,
		AwakeClosed: p.awakeClosed, AwakeCounted: p.awakeCounted,
	}
	next := in.Pool
	if p.v >= 1 {
		next = p.cfg
		carry.ConfigMinIdle, carry.ConfigMaxMachines = ptr(p.cfgMinIdle), ptr(p.cfgMaxMachines)
	}
	for _, m := range p.machines {
		pm := m.PoolMachine
		if p.v >= 1 {
			pm.NeedsSleep = m.needsSleep
			if m.awake {
				pm.WokeAt = m.wokeAt
			}
		}
		carry.Machines = append(carry.Machines, pm)
	}
	for _, w := range p.queue {
		carry.Queue = append(carry.Queue, w.req)
	}
	workflow.GetLogger(ctx).Info("continuing as new", "machines", len(carry.Machines), "queue", len(carry.Queue), "pending_signals", len(carry.Pending))
	return workflow.NewContinueAsNewError(ctx, runnerapi.RunnerPoolName, runnerapi.PoolInput{Pool: next, Carry: carry})
}

func ptr[T any](v T) *T { return &v }

// drainSignals takes every signal still buffered at the handover: those
// that change the state are carried (Pending), observations are applied.
func (p *pool) drainSignals(ctx workflow.Context, ch poolChans) {
	if p.acct >= 1 {
		// Carried before the releases, as the selector takes them.
		drain(ch.started, func(r runnerapi.RunnerStarted) { p.pending = append(p.pending, runnerapi.PoolSignal{Started: &r}) })
	}
	drain(ch.release, func(r runnerapi.ReleaseRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Release: &r}) })
	drain(ch.resize, func(r runnerapi.ResizeRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Resize: &r}) })
	drain(ch.drain, func(r runnerapi.DrainRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Drain: &r}) })
	drain(ch.prewarm, func(r runnerapi.PrewarmRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Prewarm: &r}) })
	if p.v >= 1 {
		// Children run on: what they say is applied or carried.
		drain(ch.created, func(mc runnerapi.MachineCreated) { p.created(mc) })
		drain(ch.provisioned, func(r runnerapi.MachineProvisioned) {
			p.pending = append(p.pending, runnerapi.PoolSignal{Provisioned: &r})
		})
		drain(ch.withdraw, func(r runnerapi.WithdrawRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Withdraw: &r}) })
		drain(ch.started, func(r runnerapi.RunnerStarted) { p.pending = append(p.pending, runnerapi.PoolSignal{Started: &r}) })
		// The next run reads the configuration anyway.
		drain(ch.reconfigure, func(runnerapi.ReconfigureRequest) {})
	} else {
		// No child runs now: a late "machine created" is about a machine the
		// pool already has (or whose child deleted it).
		for ch.created.ReceiveAsync(nil) {
		}
	}
	drain(ch.observed, func(o runnerapi.MachineObserved) { p.observed(o) })
}

// drain receives every value buffered in c.
func drain[T any](c workflow.ReceiveChannel, f func(T)) {
	for {
		var v T
		if !c.ReceiveAsync(&v) {
			return
		}
		f(v)
	}
}
