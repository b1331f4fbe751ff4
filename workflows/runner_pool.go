package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
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

// Machine operations in flight (poolMachine.op).
const (
	opSleep  = "sleep"
	opWake   = "wake"
	opDelete = "delete"
)

// poolMachine is one machine of the inventory plus per-run bookkeeping.
type poolMachine struct {
	runnerapi.PoolMachine
	op         string // an activity running on the machine ("" = none)
	deleting   bool   // a delete was decided (it may wait for op to finish)
	awake      bool   // last seen running (provisioned awake, released, prewarmed)
	wokeAt     time.Time
	fresh      bool // provisioned awake for a waiting job and never leased
	needsSleep bool // put to sleep once nobody waiting takes it
	// carried: a provisioning slot carried over continue-as-new; its child
	// reports by signal only (this run has no future for it).
	carried bool
}

// waiter is one acquire request waiting for a machine, in arrival order.
type waiter struct {
	req runnerapi.AcquireRequest
	// arrived is false for a place carried over continue-as-new whose
	// caller has not come back yet.
	arrived bool
	m       *poolMachine // the machine leased to it
	fresh   bool
	// withdrawn: the job took the request back (or its holder is gone).
	withdrawn bool
}

// pool is one RunnerPool run's state.
type pool struct {
	cfg         pools.Pool
	minIdle     int
	maxMachines int
	seq         int
	failures    int

	machines []*poolMachine // insertion order (deterministic)
	queue    []*waiter      // unserved requests, oldest first

	retryAt      time.Time // no provisioning before (backoff)
	backoffTimer workflow.Future
	reserveTimer workflow.Future
	winding      bool // continue-as-new is due: start nothing long-running
	canning      bool // continuing as new now: waiting acquires return
	pending      []runnerapi.PoolSignal
	kickCh       workflow.Channel

	// Awake accounting: every closed interval of every machine (deleted
	// ones included), and the whole seconds of it emitted as
	// drydock_pool_awake_seconds_total. Carried across continue-as-new.
	awakeClosed  time.Duration
	awakeCounted int64

	// v is the run's code version (runnerPoolVersion): a run started before
	// it keeps its command sequence.
	v workflow.Version
	// cfgMinIdle and cfgMaxMachines are the configuration's own bounds in
	// effect (before resizes): a configuration that says otherwise wins.
	cfgMinIdle, cfgMaxMachines int
	leaseTimer                 workflow.Future // next lease liveness check
	checking                   bool            // a lease liveness check is running
	// closedOnce: carried provisioning children a liveness check saw closed
	// (a second sighting gives their slot up).
	closedOnce []string
	// withdrawn: recent withdrawals, so an acquire that arrives after its
	// own withdrawal is refused.
	withdrawn []runnerapi.WithdrawRequest
}

// runnerPoolVersion guards the changes of issue 12 in RunnerPool: live
// configuration, lease liveness checks, provisioning children that report
// by signal and do not hold up continue-as-new, persistent-mode release
// by the runner that ran the job, sleep state carried.
const runnerPoolVersion = "runner-pool-issue-12"

// RunnerPool is the entity workflow of one runner pool (ID
// runnerapi.PoolWorkflowID): it owns the pool's machines and leases them to
// jobs through the acquire Update, in strict arrival order.
func RunnerPool(ctx workflow.Context, in runnerapi.PoolInput) error {
	p := &pool{cfg: in.Pool, minIdle: in.Pool.MinIdle, maxMachines: in.Pool.MaxMachines}
	p.v = workflow.GetVersion(ctx, runnerPoolVersion, workflow.DefaultVersion, 1)
	if p.maxMachines <= 0 {
		p.maxMachines = pools.DefaultMaxMachines
	}
	p.kickCh = workflow.NewBufferedChannel(ctx, 1)
	log := workflow.GetLogger(ctx)
	now := workflow.Now(ctx)
	if c := in.Carry; c != nil {
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
			p.retryAt = now.Add(provisionBackoff(p.failures))
		}
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, SearchAttrPool.ValueSet(p.cfg.Name))

	if err := workflow.SetQueryHandler(ctx, runnerapi.QueryInventory, func() (runnerapi.Inventory, error) {
		return p.inventory(workflow.Now(ctx)), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, runnerapi.UpdateAcquire, p.acquire, workflow.UpdateHandlerOptions{
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
	}); err != nil {
		return err
	}

	if p.v >= 1 {
		// After the handlers: an acquire sent with the pool's start must
		// find its handler while the configuration is read.
		p.startConfig(ctx, in)
	}

	releaseCh := workflow.GetSignalChannel(ctx, runnerapi.SignalRelease)
	resizeCh := workflow.GetSignalChannel(ctx, runnerapi.SignalResize)
	drainCh := workflow.GetSignalChannel(ctx, runnerapi.SignalDrain)
	prewarmCh := workflow.GetSignalChannel(ctx, runnerapi.SignalPrewarm)
	createdCh := workflow.GetSignalChannel(ctx, runnerapi.SignalMachineCreated)
	observedCh := workflow.GetSignalChannel(ctx, runnerapi.SignalMachineObserved)
	chans := poolChans{release: releaseCh, resize: resizeCh, drain: drainCh, prewarm: prewarmCh, created: createdCh, observed: observedCh,
		withdraw:    workflow.GetSignalChannel(ctx, runnerapi.SignalWithdraw),
		reconfigure: workflow.GetSignalChannel(ctx, runnerapi.SignalReconfigure),
		provisioned: workflow.GetSignalChannel(ctx, runnerapi.SignalMachineProvisioned)}

	// Machines whose deletion the previous run had started are deleted again
	// (deleting is idempotent); carried signals apply before anything else.
	for _, m := range p.machines {
		if m.State == runnerapi.MachineBroken || (m.State == runnerapi.MachineDraining && m.JobID == 0) {
			p.startDelete(ctx, m, "resume delete")
		}
		if m.State == runnerapi.MachineWaking || (m.State == runnerapi.MachineProvisioning && !m.carried) {
			// Never carried (the run waits for wakes and children); tolerated as idle.
			m.State = runnerapi.MachineIdle
		}
	}
	if len(p.queue) > 0 || slices.ContainsFunc(p.machines, func(m *poolMachine) bool { return m.Reserved }) {
		p.reserveTimer = workflow.NewTimerWithOptions(ctx, reservationTTL, workflow.TimerOptions{Summary: "hold carried requests' places"})
	}
	if in.Carry != nil {
		for _, s := range in.Carry.Pending {
			p.apply(ctx, s)
		}
	}

	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.dispatch(ctx)
		if !p.winding && workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			log.Info("continue-as-new suggested: finishing in-flight provisioning and machine operations")
			p.winding = true
		}
		if p.winding && (p.v >= 1 || p.count(runnerapi.MachineProvisioning) == 0) && !p.shortOpsInFlight() {
			return p.continueAsNew(ctx, in, chans)
		}
		if p.v >= 1 && p.leaseTimer == nil && !p.checking && !p.winding && p.holdsForOthers() {
			p.leaseTimer = workflow.NewTimerWithOptions(ctx, leaseCheckEvery, workflow.TimerOptions{Summary: "check that lease holders still run"})
		}
		if p.backoffTimer == nil && workflow.Now(ctx).Before(p.retryAt) {
			p.backoffTimer = workflow.NewTimerWithOptions(ctx, p.retryAt.Sub(workflow.Now(ctx)),
				workflow.TimerOptions{Summary: fmt.Sprintf("provisioning backoff after %d failures", p.failures)})
		}

		sel := workflow.NewSelector(ctx)
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
		sel.AddReceive(p.kickCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		sel.AddReceive(releaseCh, func(c workflow.ReceiveChannel, _ bool) {
			var r runnerapi.ReleaseRequest
			c.Receive(ctx, &r)
			p.apply(ctx, runnerapi.PoolSignal{Release: &r})
		})
		sel.AddReceive(resizeCh, func(c workflow.ReceiveChannel, _ bool) {
			var r runnerapi.ResizeRequest
			c.Receive(ctx, &r)
			p.apply(ctx, runnerapi.PoolSignal{Resize: &r})
		})
		sel.AddReceive(drainCh, func(c workflow.ReceiveChannel, _ bool) {
			var r runnerapi.DrainRequest
			c.Receive(ctx, &r)
			p.apply(ctx, runnerapi.PoolSignal{Drain: &r})
		})
		sel.AddReceive(prewarmCh, func(c workflow.ReceiveChannel, _ bool) {
			var r runnerapi.PrewarmRequest
			c.Receive(ctx, &r)
			p.apply(ctx, runnerapi.PoolSignal{Prewarm: &r})
		})
		sel.AddReceive(createdCh, func(c workflow.ReceiveChannel, _ bool) {
			var mc runnerapi.MachineCreated
			c.Receive(ctx, &mc)
			p.created(ctx, mc)
		})
		if p.v >= 1 {
			p.addV1Receivers(ctx, sel, chans)
		}
		sel.AddReceive(observedCh, func(c workflow.ReceiveChannel, _ bool) {
			var o runnerapi.MachineObserved
			c.Receive(ctx, &o)
			p.observed(ctx, o)
		})
		if p.backoffTimer != nil {
			sel.AddFuture(p.backoffTimer, func(workflow.Future) { p.backoffTimer = nil })
		}
		if p.reserveTimer != nil {
			sel.AddFuture(p.reserveTimer, func(workflow.Future) {
				p.reserveTimer = nil
				p.expireReservations(ctx)
			})
		}
		if p.leaseTimer != nil {
			sel.AddFuture(p.leaseTimer, func(workflow.Future) {
				p.leaseTimer = nil
				p.startLeaseCheck(ctx)
			})
		}
		sel.Select(ctx)
	}
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
		if err := workflow.Await(ctx, func() bool { return m.op == "" || m.op == opDelete }); err != nil {
			return runnerapi.Lease{}, err
		}
		return runnerapi.Lease{MachineID: m.MachineID, RunnerName: m.RunnerName}, nil
	}
	w := p.waiterOf(req.JobID, req.Attempt)
	if w == nil {
		w = &waiter{req: req}
		p.queue = append(p.queue, w)
	}
	// A carried place is taken again by its caller.
	w.arrived = true
	p.kick()
	if err := workflow.Await(ctx, func() bool {
		return (w.m != nil && (w.m.op == "" || w.m.op == opDelete)) || (w.m == nil && (p.canning || w.withdrawn))
	}); err != nil {
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

// leaseOf returns the machine leased to a job attempt, or nil.
func (p *pool) leaseOf(jobID int64, attempt int) *poolMachine {
	for _, m := range p.machines {
		if m.JobID == jobID && m.Attempt == attempt && (m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining) {
			return m
		}
	}
	return nil
}

func (p *pool) waiterOf(jobID int64, attempt int) *waiter {
	for _, w := range p.queue {
		if w.req.JobID == jobID && w.req.Attempt == attempt {
			return w
		}
	}
	return nil
}

// dispatch hands free machines to waiting requests in arrival order, starts
// provisioning while there is demand and room, and puts machines nobody
// took to sleep. It runs on the main coroutine only.
func (p *pool) dispatch(ctx workflow.Context) {
	if p.canning {
		return
	}
	for i := 0; i < len(p.queue); {
		w := p.queue[i]
		m := p.pickFree(w.req.Exclude)
		if m == nil {
			i++
			continue
		}
		p.lease(ctx, m, w)
		p.queue = slices.Delete(p.queue, i, i+1)
	}

	now := workflow.Now(ctx)
	if !p.winding && !now.Before(p.retryAt) {
		for p.capacityUsed() < p.maxMachines {
			// (Machines being deleted are draining or broken, not idle.)
			free := p.count(runnerapi.MachineIdle) + p.count(runnerapi.MachineWaking)
			provisioning := p.count(runnerapi.MachineProvisioning)
			// Every request still waiting could use no free machine (the
			// loop above served all it could; the rest exclude them): each
			// needs a new one. MinIdle more are kept for the next jobs.
			spare := provisioning - len(p.queue)
			if spare >= 0 && free+spare >= min(p.minIdle, p.maxMachines) {
				break
			}
			p.startProvision(ctx, len(p.queue) > provisioning)
		}
	}

	if !p.winding && !now.Before(p.retryAt) {
		p.recycleExcluded(ctx)
	}

	for _, m := range p.machines {
		// Only a machine handed over by the dispatch right after its
		// provisioning is fresh (still running for its job).
		m.fresh = false
		if !p.winding && m.State == runnerapi.MachineIdle && m.needsSleep && m.op == "" && !m.deleting {
			p.startSleep(ctx, m)
		}
	}
}

// recycleExcluded breaks a deadlock: the pool is full, requests wait, and
// the only free machines are ones those requests exclude (a job retried
// after a machine that failed it). Such machines are deleted, the longest
// idle first, to make room for new ones.
func (p *pool) recycleExcluded(ctx workflow.Context) {
	if len(p.queue) == 0 || p.capacityUsed() < p.maxMachines {
		return
	}
	// Waiters with no machine coming, less the room deletions will free.
	short := len(p.queue) - p.count(runnerapi.MachineProvisioning)
	for _, m := range p.machines {
		if m.deleting && m.State != runnerapi.MachineBroken {
			short--
		}
	}
	if short <= 0 {
		return
	}
	// After the dispatch served what it could, every free machine left is
	// excluded by every waiting request.
	free := slices.DeleteFunc(slices.Clone(p.machines), func(m *poolMachine) bool {
		return m.deleting || (m.State != runnerapi.MachineIdle && m.State != runnerapi.MachineWaking)
	})
	slices.SortStableFunc(free, func(a, b *poolMachine) int { return a.Since.Compare(b.Since) })
	for _, m := range free[:min(short, len(free))] {
		p.startDelete(ctx, m, "recycled: excluded by the waiting jobs")
	}
}

// pickFree returns the free machine a request should get: one awake and
// idle first, then one asleep, then one being woken or put to sleep (the
// lease is returned when that finishes); the most recently used first, so a
// hot set keeps warm caches and the rest stay asleep (and are deleted first
// when the pool shrinks).
func (p *pool) pickFree(exclude []string) *poolMachine {
	var best *poolMachine
	rank := func(m *poolMachine) int {
		switch {
		case m.State == runnerapi.MachineIdle && m.op == "" && m.awake:
			return 0
		case m.State == runnerapi.MachineIdle && m.op == "":
			return 1
		case m.State == runnerapi.MachineWaking:
			return 2
		default:
			return 3
		}
	}
	for _, m := range p.machines {
		if (m.State != runnerapi.MachineIdle && m.State != runnerapi.MachineWaking) || m.deleting || slices.Contains(exclude, m.MachineID) {
			continue
		}
		if best == nil || rank(m) < rank(best) || (rank(m) == rank(best) && m.Since.After(best.Since)) {
			best = m
		}
	}
	return best
}

func (p *pool) lease(ctx workflow.Context, m *poolMachine, w *waiter) {
	m.State = runnerapi.MachineBusy
	m.JobID, m.Attempt = w.req.JobID, w.req.Attempt
	m.RunnerName = runnerapi.RunnerName(p.cfg.Name, w.req.JobID, w.req.Attempt)
	m.Jobs++
	m.Since = workflow.Now(ctx)
	m.Reserved = !w.arrived
	m.needsSleep = false
	w.m, w.fresh = m, m.fresh
	m.fresh = false
	workflow.GetLogger(ctx).Info("machine leased", "machine", m.MachineID, "job", w.req.JobID, "attempt", w.req.Attempt, "fresh", w.fresh)
}

// capacityUsed counts machines against MaxMachines: every state but broken.
func (p *pool) capacityUsed() int {
	n := 0
	for _, m := range p.machines {
		if m.State != runnerapi.MachineBroken {
			n++
		}
	}
	return n
}

// live counts machines the pool keeps: not broken, not being deleted.
func (p *pool) live() int {
	n := 0
	for _, m := range p.machines {
		if m.State != runnerapi.MachineBroken && !m.deleting {
			n++
		}
	}
	return n
}

func (p *pool) count(s runnerapi.MachineState) int {
	n := 0
	for _, m := range p.machines {
		if m.State == s {
			n++
		}
	}
	return n
}

// shortOpsInFlight: a sleep or a wake is running (deletes may be carried).
func (p *pool) shortOpsInFlight() bool {
	return slices.ContainsFunc(p.machines, func(m *poolMachine) bool { return m.op == opSleep || m.op == opWake })
}

func provisionBackoff(failures int) time.Duration {
	d := provisionBackoffBase
	for i := 1; i < failures && d < provisionBackoffMax; i++ {
		d *= 2
	}
	return min(d, provisionBackoffMax)
}

// startProvision starts a RunnerProvision child for one new machine; its
// slot counts against MaxMachines until it finishes.
func (p *pool) startProvision(ctx workflow.Context, forWaiter bool) {
	p.seq++
	id := runnerapi.ProvisionWorkflowID(p.cfg.Name, p.seq)
	m := &poolMachine{PoolMachine: runnerapi.PoolMachine{State: runnerapi.MachineProvisioning, Provision: id, Since: workflow.Now(ctx)}}
	p.machines = append(p.machines, m)
	why := "min_idle"
	if forWaiter {
		why = "a waiting job"
	}
	opts := workflow.ChildWorkflowOptions{
		WorkflowID:    id,
		StaticSummary: fmt.Sprintf("new %s runner machine for %s", p.cfg.Name, why),
		// If the pool ends, the child deletes what it created.
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		TypedSearchAttributes: temporal.NewSearchAttributes(SearchAttrPool.ValueSet(p.cfg.Name)),
	}
	in := runnerapi.ProvisionInput{Pool: p.cfg, Seq: p.seq, KeepAwake: forWaiter}
	if p.v >= 1 {
		// The child outlives a continue-as-new and reports to whichever
		// run is current; it deletes its machine if no pool is left.
		opts.ParentClosePolicy = enumspb.PARENT_CLOSE_POLICY_ABANDON
		in.Report = true
	}
	f := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), runnerapi.RunnerProvisionName, in)
	workflow.Go(ctx, func(gctx workflow.Context) {
		var machineID string
		err := f.Get(gctx, &machineID)
		p.provisionDone(gctx, m, machineID, err, forWaiter)
	})
}

// provisionedSignal is the SignalMachineProvisioned handler: a child's
// report, which reaches the run that started it (before its result) or a
// later one (its slot carried).
func (p *pool) provisionedSignal(ctx workflow.Context, r runnerapi.MachineProvisioned) {
	for _, m := range p.machines {
		if m.Provision == r.Provision && m.State == runnerapi.MachineProvisioning {
			var err error
			if r.Error != "" || r.MachineID == "" {
				err = fmt.Errorf("provisioning %s failed: %s", r.Provision, r.Error)
			}
			p.provisionDone(ctx, m, r.MachineID, err, r.Awake)
			return
		}
	}
}

// provisionDone settles a provisioning slot once: with its new machine, or
// freed after a failure (with a backoff). awake: the child left it running.
func (p *pool) provisionDone(ctx workflow.Context, m *poolMachine, machineID string, err error, awake bool) {
	if p.v >= 1 && (m.State != runnerapi.MachineProvisioning || !slices.Contains(p.machines, m)) {
		return // settled already (by the child's report or its result)
	}
	id := m.Provision
	defer p.kick()
	log := workflow.GetLogger(ctx)
	if err != nil || machineID == "" {
		// The child deleted the machine it made, if any.
		if m.MachineID != "" {
			p.observeAt(ctx, m, dedalus.PhaseDestroyed, time.Time{})
		}
		// The slot frees; dispatch provisions again after a backoff if
		// there is still demand.
		p.machines = slices.DeleteFunc(p.machines, func(x *poolMachine) bool { return x == m })
		p.failures++
		p.retryAt = workflow.Now(ctx).Add(provisionBackoff(p.failures))
		log.Warn("provisioning a runner machine failed", "child", id, "failures", p.failures, "retry_in", provisionBackoff(p.failures), "error", err)
		return
	}
	p.failures = 0
	p.retryAt = time.Time{}
	now := workflow.Now(ctx)
	m.MachineID, m.Provision = machineID, ""
	if p.cfg.Mode == pools.ModePersistent {
		m.PersistentRunner = runnerapi.PersistentRunnerName(p.cfg.Name, machineID)
	}
	if m.Awake.Last.IsZero() {
		// Its "created" signal was not seen: it ran from no earlier
		// than the provisioning's start.
		p.observeAt(ctx, m, dedalus.PhaseRunning, m.Since)
	}
	m.State, m.Since = runnerapi.MachineIdle, now
	if awake {
		m.awake, m.wokeAt, m.fresh, m.needsSleep = true, now, true, true
	} else {
		// The child put it to sleep as its last step (or failed to, and
		// autosleep will): asleep by the child's completion.
		p.observeAt(ctx, m, dedalus.PhaseSleeping, now)
	}
	log.Info("runner machine provisioned", "machine", machineID, "child", id)
	if p.live() > p.maxMachines {
		p.startDelete(ctx, m, "pool above max_machines")
	}
}

// startSleep puts an idle machine to sleep, best effort: a machine that does
// not sleep is still idle, and its autosleep puts it to sleep later.
func (p *pool) startSleep(ctx workflow.Context, m *poolMachine) {
	m.op, m.needsSleep = opSleep, false
	workflow.Go(ctx, func(gctx workflow.Context) {
		var slept activities.MachineRef
		err := workflow.ExecuteActivity(shortMachineOp(gctx, "sleep idle runner machine "+m.MachineID), machineActs.SleepMachine, m.MachineID).Get(gctx, &slept)
		m.op = ""
		if err != nil {
			workflow.GetLogger(gctx).Warn("idle runner machine did not sleep; its autosleep will", "machine", m.MachineID, "error", err)
		} else {
			m.awake = false
			p.observe(gctx, m, slept)
		}
		p.kick()
	})
}

// startWake wakes an idle machine ahead of demand; it stays idle.
func (p *pool) startWake(ctx workflow.Context, m *poolMachine) {
	m.op, m.State, m.Since = opWake, runnerapi.MachineWaking, workflow.Now(ctx)
	workflow.Go(ctx, func(gctx workflow.Context) {
		var woke activities.MachineRef
		err := workflow.ExecuteActivity(shortMachineOp(gctx, "prewarm runner machine "+m.MachineID), machineActs.WakeMachine, m.MachineID).Get(gctx, &woke)
		m.op = ""
		if err != nil {
			workflow.GetLogger(gctx).Warn("prewarm wake failed", "machine", m.MachineID, "error", err)
		} else {
			m.awake, m.wokeAt = true, workflow.Now(gctx)
			p.observe(gctx, m, woke)
		}
		if m.State == runnerapi.MachineWaking { // not leased meanwhile
			m.State, m.Since = runnerapi.MachineIdle, workflow.Now(gctx)
		}
		p.kick()
	})
}

// startDelete deletes a machine (after any operation on it finishes) and
// removes it from the inventory. m.State says why (broken, draining).
func (p *pool) startDelete(ctx workflow.Context, m *poolMachine, why string) {
	if m.deleting {
		return
	}
	m.deleting = true
	m.needsSleep = false
	if m.State != runnerapi.MachineBroken {
		m.State = runnerapi.MachineDraining
	}
	m.JobID, m.Attempt, m.RunnerName, m.Reserved = 0, 0, "", false
	m.Since = workflow.Now(ctx)
	workflow.Go(ctx, func(gctx workflow.Context) {
		if err := workflow.Await(gctx, func() bool { return m.op == "" }); err != nil {
			return
		}
		m.op = opDelete
		gone, err := deleteMachine(gctx, m.MachineID, why)
		if err != nil {
			return // cancelled
		}
		p.observe(gctx, m, gone)
		p.machines = slices.DeleteFunc(p.machines, func(x *poolMachine) bool { return x == m })
		p.kick()
	})
}

// deleteMachine deletes a machine, retrying until it is gone: a leaked
// machine costs money. Non-retryable failures (e.g. a machine in a
// transition) are retried after a pause too. It returns the delete's
// answer: what the machine was, and destroyed.
func deleteMachine(ctx workflow.Context, machineID, why string) (activities.MachineRef, error) {
	if machineID == "" {
		return activities.MachineRef{}, nil
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("delete runner machine %s (%s)", machineID, why),
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute},
	})
	pause := time.Minute
	for {
		var gone activities.MachineRef
		err := workflow.ExecuteActivity(actx, machineActs.DeleteMachine, machineID).Get(ctx, &gone)
		if err == nil {
			if gone.Phase == "" {
				gone.Phase = dedalus.PhaseDestroyed // an older worker's answer
			}
			return gone, nil
		}
		if ctx.Err() != nil {
			return activities.MachineRef{}, ctx.Err()
		}
		workflow.GetLogger(ctx).Error("delete runner machine failed; retrying", "machine", machineID, "in", pause, "error", err)
		if err := workflow.NewTimerWithOptions(ctx, pause, workflow.TimerOptions{Summary: "retry deleting " + machineID}).Get(ctx, nil); err != nil {
			return activities.MachineRef{}, err
		}
		pause = min(2*pause, 30*time.Minute)
	}
}

// shortMachineOp: sleeps and wakes take seconds; they are retried a few
// times, then given up (the pool copes: autosleep, or the job wakes it).
func shortMachineOp(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: 2 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 3},
	})
}

// observe folds a machine activity's result into the machine's awake meter.
func (p *pool) observe(ctx workflow.Context, m *poolMachine, ref activities.MachineRef) {
	p.addAwake(ctx, observeRef(&m.Awake, ref, workflow.Now(ctx)))
}

// observeAt folds in one phase seen at a time (zero: now).
func (p *pool) observeAt(ctx workflow.Context, m *poolMachine, phase dedalus.MachinePhase, at time.Time) {
	p.addAwake(ctx, observeAt(&m.Awake, phase, at, workflow.Now(ctx)))
}

// observed is the SignalMachineObserved handler: a job's wake of its
// leased machine. A machine the pool no longer has is ignored.
func (p *pool) observed(ctx workflow.Context, o runnerapi.MachineObserved) {
	for _, m := range p.machines {
		if m.MachineID != "" && m.MachineID == o.MachineID {
			p.observe(ctx, m, activities.MachineRef{MachineID: o.MachineID, WasPhase: o.WasPhase,
				WasTransitionAt: o.WasTransitionAt, Phase: o.Phase, TransitionAt: o.TransitionAt})
			return
		}
	}
}

// addAwake adds a closed awake interval to the pool's total and brings
// drydock_pool_awake_seconds_total up to it.
func (p *pool) addAwake(ctx workflow.Context, closed time.Duration) {
	if closed <= 0 {
		return
	}
	p.awakeClosed += closed
	countAwake(poolAwakeCounter(ctx, p.cfg.Name), p.awakeClosed, &p.awakeCounted)
}

// apply folds one signal into the state.
func (p *pool) apply(ctx workflow.Context, s runnerapi.PoolSignal) {
	switch {
	case s.Release != nil:
		p.release(ctx, *s.Release)
	case s.Resize != nil:
		p.resize(ctx, *s.Resize)
	case s.Drain != nil:
		p.drain(ctx, *s.Drain)
	case s.Withdraw != nil:
		p.withdraw(ctx, *s.Withdraw)
	case s.Provisioned != nil:
		p.provisionedSignal(ctx, *s.Provisioned)
	case s.Prewarm != nil:
		if p.winding {
			// A wake now would hold up the handover: the next run does it.
			p.pending = append(p.pending, s)
			return
		}
		p.prewarm(ctx, *s.Prewarm)
	}
}

// findRelease finds the machine a release is about. byLease reports a match
// on the lease's own runner name, which names one lease (job and attempt).
func (p *pool) findRelease(r runnerapi.ReleaseRequest) (m *poolMachine, byLease bool) {
	for _, m := range p.machines {
		if r.MachineID != "" && m.MachineID == r.MachineID {
			return m, false
		}
	}
	if r.RunnerName == "" {
		return nil, false
	}
	for _, m := range p.machines {
		if m.RunnerName == r.RunnerName && m.MachineID != "" {
			return m, true
		}
	}
	// Persistent mode: GitHub reports the machine's own runner.
	for _, m := range p.machines {
		if m.PersistentRunner != "" && m.PersistentRunner == r.RunnerName {
			return m, false
		}
	}
	return nil, false
}

// release is the SignalRelease handler.
func (p *pool) release(ctx workflow.Context, r runnerapi.ReleaseRequest) {
	log := workflow.GetLogger(ctx)
	m, byLease := p.findRelease(r)
	if m == nil {
		log.Warn("release of an unknown machine ignored", "machine", r.MachineID, "runner", r.RunnerName, "job", r.JobID)
		return
	}
	if m.deleting {
		log.Info("release of a machine being deleted ignored", "machine", m.MachineID)
		return
	}
	leased := m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining
	// A late or duplicate release must not free a later lease. The lease's
	// runner name names the lease, whichever job GitHub ran on it; a
	// machine ID or a persistent runner's name must come with the lease's
	// job (and attempt, if given).
	if leased && p.v >= 1 && p.ranOnPersistent(m, r) {
		// The completion of job r.JobID on this machine's runner, which
		// another job leased: this machine is free now, and the machine
		// r.JobID leased goes to that other job (whose job its runner is
		// running, or will run), never freed under it.
		p.swapLease(ctx, m, r.JobID)
	} else if leased && !byLease && ((r.JobID != 0 && r.JobID != m.JobID) || (r.Attempt != 0 && r.Attempt != m.Attempt)) {
		log.Warn("stale release ignored", "machine", m.MachineID, "release_job", r.JobID, "release_attempt", r.Attempt, "lease_job", m.JobID, "lease_attempt", m.Attempt)
		return
	}
	if !leased && !(r.Broken && r.JobID == 0) {
		// Only an operator (no job) may mark a free machine broken.
		log.Info("release of a machine that is not leased ignored", "machine", m.MachineID, "state", m.State)
		return
	}
	switch {
	case r.Broken:
		log.Warn("runner machine broken: deleting it", "machine", m.MachineID, "job", r.JobID, "reason", r.Reason)
		m.State = runnerapi.MachineBroken
		reason := "broken"
		if r.Reason != "" {
			reason += ": " + r.Reason
		}
		p.startDelete(ctx, m, reason)
	case m.State == runnerapi.MachineDraining:
		p.startDelete(ctx, m, "drained")
	case p.live() > p.maxMachines:
		p.startDelete(ctx, m, "pool above max_machines")
	default:
		m.State, m.Since = runnerapi.MachineIdle, workflow.Now(ctx)
		m.JobID, m.Attempt, m.RunnerName, m.Reserved = 0, 0, "", false
		// It ran a job, so it is awake; if nobody waiting takes it, it sleeps.
		m.awake, m.wokeAt, m.needsSleep = true, workflow.Now(ctx), true
	}
}

// resize is the SignalResize handler.
func (p *pool) resize(ctx workflow.Context, r runnerapi.ResizeRequest) {
	log := workflow.GetLogger(ctx)
	if (r.MinIdle != nil && *r.MinIdle < 0) || (r.MaxMachines != nil && *r.MaxMachines < 0) {
		log.Warn("resize with negative bounds ignored")
		return
	}
	if r.MinIdle != nil {
		p.minIdle = *r.MinIdle
	}
	if r.MaxMachines != nil {
		p.maxMachines = *r.MaxMachines
	}
	log.Info("pool resized", "min_idle", p.minIdle, "max_machines", p.maxMachines)
	// Above the bound: delete idle machines, the longest idle first; busy
	// ones go when released.
	idle := slices.DeleteFunc(slices.Clone(p.machines), func(m *poolMachine) bool {
		return m.deleting || (m.State != runnerapi.MachineIdle && m.State != runnerapi.MachineWaking)
	})
	slices.SortStableFunc(idle, func(a, b *poolMachine) int { return a.Since.Compare(b.Since) })
	for _, m := range idle {
		if p.live() <= p.maxMachines {
			break
		}
		p.startDelete(ctx, m, "pool above max_machines")
	}
}

// drain is the SignalDrain handler: idle machines are deleted now, leased
// ones when released. Machines still being provisioned are new: kept.
func (p *pool) drain(ctx workflow.Context, r runnerapi.DrainRequest) {
	found := false
	for _, m := range slices.Clone(p.machines) {
		if m.MachineID == "" || (r.MachineID != "" && m.MachineID != r.MachineID) || m.deleting {
			continue
		}
		found = true
		switch m.State {
		case runnerapi.MachineIdle, runnerapi.MachineWaking:
			p.startDelete(ctx, m, "drained")
		case runnerapi.MachineBusy:
			m.State = runnerapi.MachineDraining
		}
	}
	if !found && r.MachineID != "" {
		workflow.GetLogger(ctx).Warn("drain of an unknown machine ignored", "machine", r.MachineID)
	}
}

// prewarm is the SignalPrewarm handler: up to Count idle machines are awake
// afterwards (those already awake count); they stay idle and autosleep if
// no job comes.
func (p *pool) prewarm(ctx workflow.Context, r runnerapi.PrewarmRequest) {
	window := autosleepOf(p.cfg)
	now := workflow.Now(ctx)
	n := r.Count
	var asleep []*poolMachine
	for _, m := range p.machines {
		if m.deleting {
			continue
		}
		switch {
		case m.State == runnerapi.MachineWaking:
			n--
		case m.State == runnerapi.MachineIdle && m.op == "" && m.awake && now.Sub(m.wokeAt) < window:
			n--
		case m.State == runnerapi.MachineIdle && m.op != opDelete:
			asleep = append(asleep, m)
		}
	}
	for _, m := range asleep {
		if n <= 0 {
			break
		}
		if m.op != "" {
			continue // being put to sleep: it is woken next time
		}
		p.startWake(ctx, m)
		n--
	}
}

func autosleepOf(cfg pools.Pool) time.Duration {
	s := cfg.Machine.Autosleep
	if s == "" {
		s = pools.DefaultAutosleep
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		d, _ = time.ParseDuration(pools.DefaultAutosleep)
	}
	return d
}

// expireReservations gives up on carried requests whose callers did not
// come back: their places are dropped and their machines return to the pool.
func (p *pool) expireReservations(ctx workflow.Context) {
	log := workflow.GetLogger(ctx)
	p.queue = slices.DeleteFunc(p.queue, func(w *waiter) bool {
		if !w.arrived {
			log.Warn("carried acquire request expired", "job", w.req.JobID, "attempt", w.req.Attempt)
		}
		return !w.arrived
	})
	for _, m := range slices.Clone(p.machines) {
		if m.Reserved {
			log.Warn("reserved lease expired", "machine", m.MachineID, "job", m.JobID, "attempt", m.Attempt)
			p.release(ctx, runnerapi.ReleaseRequest{MachineID: m.MachineID, JobID: m.JobID, Attempt: m.Attempt})
		}
	}
}

// inventory answers QueryInventory, with the awake times as of now (the
// workflow's clock).
func (p *pool) inventory(now time.Time) runnerapi.Inventory {
	inv := runnerapi.Inventory{
		Pool: p.cfg.Name, MinIdle: p.minIdle, MaxMachines: p.maxMachines,
		Machines: []runnerapi.PoolMachine{}, Queue: []int64{},
		Counts: map[runnerapi.MachineState]int{},
	}
	for _, s := range []runnerapi.MachineState{runnerapi.MachineProvisioning, runnerapi.MachineIdle, runnerapi.MachineWaking,
		runnerapi.MachineBusy, runnerapi.MachineBroken, runnerapi.MachineDraining} {
		inv.Counts[s] = 0
	}
	awake := p.awakeClosed
	for _, m := range p.machines {
		pm := m.PoolMachine
		pm.AwakeSeconds = m.Awake.SoFar(now).Seconds()
		inv.Machines = append(inv.Machines, pm)
		inv.Counts[m.State]++
		awake += m.Awake.SoFar(now) - m.Awake.Total // the open interval
	}
	inv.AwakeSeconds, inv.AwakeAsOf = awake.Seconds(), now
	slices.SortFunc(inv.Machines, func(a, b runnerapi.PoolMachine) int {
		return cmp.Or(cmp.Compare(a.MachineID, b.MachineID), cmp.Compare(a.Provision, b.Provision))
	})
	for _, w := range p.queue {
		inv.Queue = append(inv.Queue, w.req.JobID)
	}
	return inv
}

// continueAsNew hands the pool to a fresh run: no provisioning child and
// no sleep or wake is in flight (the caller checked). Waiting acquires
// return a retryable error and keep their place in the carried queue;
// deletions in flight are carried (broken/draining) and redone.
func (p *pool) continueAsNew(ctx workflow.Context, in runnerapi.PoolInput, ch poolChans) error {
	p.canning = true
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
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
	drain(ch.release, func(r runnerapi.ReleaseRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Release: &r}) })
	drain(ch.resize, func(r runnerapi.ResizeRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Resize: &r}) })
	drain(ch.drain, func(r runnerapi.DrainRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Drain: &r}) })
	drain(ch.prewarm, func(r runnerapi.PrewarmRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Prewarm: &r}) })
	if p.v >= 1 {
		// Children run on: what they say is applied or carried.
		drain(ch.created, func(mc runnerapi.MachineCreated) { p.created(ctx, mc) })
		drain(ch.provisioned, func(r runnerapi.MachineProvisioned) {
			p.pending = append(p.pending, runnerapi.PoolSignal{Provisioned: &r})
		})
		drain(ch.withdraw, func(r runnerapi.WithdrawRequest) { p.pending = append(p.pending, runnerapi.PoolSignal{Withdraw: &r}) })
		// The next run reads the configuration anyway.
		drain(ch.reconfigure, func(runnerapi.ReconfigureRequest) {})
	} else {
		// No child runs now: a late "machine created" is about a machine the
		// pool already has (or whose child deleted it).
		for ch.created.ReceiveAsync(nil) {
		}
	}
	drain(ch.observed, func(o runnerapi.MachineObserved) { p.observed(ctx, o) })
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

// RunnerProvision (child of RunnerPool, ID runnerapi.ProvisionWorkflowID)
// makes one runner machine: create it, set it up, register its runner in
// persistent mode, and put it to sleep unless a job is waiting for it. It
// returns the machine ID. On failure or cancellation it deletes the machine
// it created, so a failed provisioning leaves nothing behind.
func RunnerProvision(ctx workflow.Context, in runnerapi.ProvisionInput) (string, error) {
	id, err := provisionMachine(ctx, in)
	if !in.Report {
		return id, err
	}
	return reportProvisioned(ctx, in, id, err)
}

// reportProvisioned tells the pool (whichever run is current) how the
// provisioning ended. With no pool left to take it, the machine is deleted.
func reportProvisioned(ctx workflow.Context, in runnerapi.ProvisionInput, id string, err error) (string, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	r := runnerapi.MachineProvisioned{Provision: workflow.GetInfo(ctx).WorkflowExecution.ID, MachineID: id, Awake: in.KeepAwake && err == nil}
	if err != nil {
		r.MachineID, r.Error = "", err.Error()
	}
	serr := workflow.SignalExternalWorkflow(dctx, runnerapi.PoolWorkflowID(in.Pool.Name), "", runnerapi.SignalMachineProvisioned, r).Get(dctx, nil)
	var gone *temporal.UnknownExternalWorkflowExecutionError
	switch {
	case serr == nil || err != nil:
		return id, err
	case errors.As(serr, &gone):
		workflow.GetLogger(ctx).Warn("no pool to take the new machine: deleting it", "machine", id)
		if _, derr := deleteMachine(dctx, id, "its pool is gone"); derr != nil {
			workflow.GetLogger(ctx).Error("runner machine not deleted", "machine", id, "error", derr)
		}
		return "", fmt.Errorf("pool %s not running: machine %s deleted", in.Pool.Name, id)
	default:
		// The pool gives the slot up when it sees this child closed.
		workflow.GetLogger(ctx).Error("pool not told about its new machine", "machine", id, "error", serr)
		return id, nil
	}
}

// provisionMachine is RunnerProvision's work.
func provisionMachine(ctx workflow.Context, in runnerapi.ProvisionInput) (string, error) {
	_ = workflow.UpsertTypedSearchAttributes(ctx, SearchAttrPool.ValueSet(in.Pool.Name))
	spec := machineSpecOf(in.Pool.Machine)
	var ref activities.MachineRef
	// Not cancellable, and retried for as long as the errors are transient:
	// a create abandoned after Dedalus made the machine (a cancellation, or
	// a lost answer followed by failed retries) would leave a machine that
	// nothing knows about.
	cctx, _ := workflow.NewDisconnectedContext(ctx)
	err := workflow.ExecuteActivity(createMachineOptions(cctx, fmt.Sprintf("create %s runner machine (%g vCPU, %d MiB, %d GiB)", in.Pool.Name, spec.VCPU, spec.MemoryMiB, spec.StorageGiB)),
		machineActs.CreateMachine, spec).Get(cctx, &ref)
	if err != nil {
		return "", fmt.Errorf("create %s runner machine: %w", in.Pool.Name, err)
	}
	id := ref.MachineID
	_ = workflow.UpsertTypedSearchAttributes(ctx, SearchAttrMachineID.ValueSet(id))
	// The pool lists the machine from now on, so the reconciler does not
	// take it for an orphan while it is being set up.
	if parent := workflow.GetInfo(ctx).ParentWorkflowExecution; parent != nil {
		err := workflow.SignalExternalWorkflow(ctx, parent.ID, "", runnerapi.SignalMachineCreated,
			runnerapi.MachineCreated{Provision: workflow.GetInfo(ctx).WorkflowExecution.ID, MachineID: id, RunningAt: ref.TransitionAt}).Get(ctx, nil)
		if err != nil {
			workflow.GetLogger(ctx).Warn("pool not told about its new machine", "machine", id, "error", err)
		}
	}
	cleanUp := func(err error) (string, error) {
		// The machine must go even when the provisioning was cancelled.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		if _, derr := deleteMachine(dctx, id, "provisioning failed"); derr != nil {
			workflow.GetLogger(ctx).Error("runner machine of a failed provisioning not deleted", "machine", id, "error", derr)
		}
		return "", err
	}
	if ctx.Err() != nil {
		return cleanUp(temporal.NewCanceledError("provisioning cancelled"))
	}

	err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("set up runner machine %s (%d setup steps, runner %s)", id, len(in.Pool.Setup), runnerVersionOf(in.Pool)),
		StartToCloseTimeout: setupTimeout(in.Pool),
		// The runner activities heartbeat every few seconds: a dead worker's
		// setup moves to another worker within 20s.
		HeartbeatTimeout:    20 * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 3,
		},
	}), runnerActs.SetupMachine, activities.SetupMachineInput{Pool: in.Pool.Name, MachineID: id}).Get(ctx, nil)
	if err != nil {
		return cleanUp(fmt.Errorf("set up runner machine %s: %w", id, err))
	}

	if in.Pool.Mode == pools.ModePersistent {
		name := runnerapi.PersistentRunnerName(in.Pool.Name, id)
		err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			Summary:             fmt.Sprintf("register persistent runner %s", name),
			StartToCloseTimeout: 5 * time.Minute,
			HeartbeatTimeout:    20 * time.Second,
			WaitForCancellation: true,
			RetryPolicy: &temporal.RetryPolicy{
				InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 5,
			},
		}), runnerActs.RegisterPersistent, activities.RegisterInput{Pool: in.Pool.Name, MachineID: id, RunnerName: name}).Get(ctx, nil)
		if err != nil {
			return cleanUp(fmt.Errorf("register persistent runner on %s: %w", id, err))
		}
	}

	if !in.KeepAwake {
		if err := workflow.ExecuteActivity(shortMachineOp(ctx, "sleep new runner machine "+id), machineActs.SleepMachine, id).Get(ctx, nil); err != nil {
			if ctx.Err() != nil {
				return cleanUp(ctx.Err())
			}
			// Best effort: its autosleep puts it to sleep.
			workflow.GetLogger(ctx).Warn("new runner machine did not sleep", "machine", id, "error", err)
		}
	}
	return id, nil
}

func machineSpecOf(m pools.Machine) activities.MachineSpec {
	spec := activities.MachineSpec{VCPU: m.VCPU, MemoryMiB: m.MemoryMiB, StorageGiB: m.StorageGiB, Autosleep: m.Autosleep}
	if spec.VCPU <= 0 {
		spec.VCPU = pools.DefaultVCPU
	}
	if spec.MemoryMiB <= 0 {
		spec.MemoryMiB = pools.DefaultMemoryMiB
	}
	if spec.StorageGiB <= 0 {
		spec.StorageGiB = pools.DefaultStorageGiB
	}
	if spec.Autosleep == "" {
		spec.Autosleep = pools.DefaultAutosleep
	}
	return spec
}

func runnerVersionOf(p pools.Pool) string {
	if p.RunnerVersion != "" {
		return p.RunnerVersion
	}
	return pools.DefaultRunnerVersion
}

// setupTimeout bounds SetupMachine: every setup step's timeout (default
// 15m) plus the runner install, plus slack for the calls around them.
func setupTimeout(p pools.Pool) time.Duration {
	step := func(s previewspec.Step) time.Duration {
		if d := s.Timeout.D(); d > 0 {
			return d
		}
		return previewspec.DefaultStepTimeout
	}
	total := 5 * time.Minute
	for _, s := range p.Setup {
		total += step(s)
	}
	if p.Install != nil {
		total += step(*p.Install)
	} else {
		total += previewspec.DefaultStepTimeout
	}
	return total
}
