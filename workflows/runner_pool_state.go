package workflows

// The pool's decisions. poolState is a RunnerPool run's state without
// Temporal: its methods change the state and append what to do (provision,
// sleep, wake, delete: poolState.out) for the run to carry out
// (pool.flush), in the order decided. Only the run (runner_pool.go) starts
// activities, children and timers, so the rules are tested without a
// workflow (runner_pool_state_test.go).

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
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
	fresh      bool // provisioned awake and not yet offered to the waiting jobs
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

// decisionKind is what a decision asks the run to do.
type decisionKind int

const (
	decideProvision decisionKind = iota + 1 // start a RunnerProvision child for slot m
	decideSleep                             // put m to sleep
	decideWake                              // wake m (it stays idle)
	decideDelete                            // delete m once its operation finished
)

// decision is one effect the state decided on, for the run to carry out.
type decision struct {
	kind      decisionKind
	m         *poolMachine
	why       string // delete: the reason
	seq       int    // provision: the child's sequence number
	forWaiter bool   // provision: a job waits for it (kept awake)
}

// poolState is one RunnerPool run's state and rules, without Temporal.
type poolState struct {
	cfg         pools.Pool
	minIdle     int
	maxMachines int
	seq         int
	failures    int

	machines []*poolMachine // insertion order (deterministic)
	queue    []*waiter      // unserved requests, oldest first

	retryAt time.Time // no provisioning before (backoff)
	winding bool      // continue-as-new is due: start nothing long-running
	canning bool      // continuing as new now: waiting acquires return
	pending []runnerapi.PoolSignal

	// Awake accounting: every closed interval of every machine (deleted
	// ones included), and the whole seconds of it emitted as
	// drydock_pool_awake_seconds_total (counter). Carried across
	// continue-as-new.
	awakeClosed  time.Duration
	awakeCounted int64
	counter      client.MetricsCounter

	// v is the run's code version (runnerPoolVersion): a run started before
	// it keeps its command sequence.
	v workflow.Version
	// acct is the run's persistent-mode accounting version
	// (runnerPoolAccountingVersion): 1 tracks each machine's lease and the
	// job its runner runs apart, and never moves a lease.
	acct workflow.Version
	// iso is the run's isolation version (runnerPoolIsolationVersion): 1
	// records each lease's repository on its machine and leases by the
	// pool's isolation mode (isolationOf); before it, any free machine.
	iso workflow.Version
	// provAwake is the run's runnerPoolProvisionAwakeVersion: 1 keeps every
	// new machine awake until the pool has offered it to the waiting jobs;
	// before it, only a machine provisioned for a waiting job.
	provAwake workflow.Version
	// leases counts leases by affinity (drydock_runner_leases_total).
	leases func(affinity string) client.MetricsCounter
	// cfgMinIdle and cfgMaxMachines are the configuration's own bounds in
	// effect (before resizes): a configuration that says otherwise wins.
	cfgMinIdle, cfgMaxMachines int
	// closedOnce: carried provisioning children a liveness check saw closed
	// (a second sighting gives their slot up).
	closedOnce []string
	// withdrawn: recent withdrawals, so an acquire that arrives after its
	// own withdrawal is refused.
	withdrawn []runnerapi.WithdrawRequest
	// finished: jobs recently reported completed on a persistent runner
	// (acct >= 1), so a late runner_started of one is ignored.
	finished []int64

	now time.Time     // the workflow's clock, set by the run before each call
	log sdklog.Logger // the workflow's (replay-aware) logger
	out []decision    // decided, not yet carried out
}

// markProvision adds a provisioning slot, which counts against
// MaxMachines until its child finishes, and decides to start the child.
func (p *poolState) markProvision(forWaiter bool) {
	p.seq++
	id := runnerapi.ProvisionWorkflowID(p.cfg.Name, p.seq)
	m := &poolMachine{PoolMachine: runnerapi.PoolMachine{State: runnerapi.MachineProvisioning, Provision: id, Since: p.now}}
	p.machines = append(p.machines, m)
	p.out = append(p.out, decision{kind: decideProvision, m: m, seq: p.seq, forWaiter: forWaiter})
}

// markSleep decides to put an idle machine to sleep.
func (p *poolState) markSleep(m *poolMachine) {
	m.op, m.needsSleep = opSleep, false
	p.out = append(p.out, decision{kind: decideSleep, m: m})
}

// markWake decides to wake an idle machine ahead of demand.
func (p *poolState) markWake(m *poolMachine) {
	m.op, m.State, m.Since = opWake, runnerapi.MachineWaking, p.now
	p.out = append(p.out, decision{kind: decideWake, m: m})
}

// markDelete decides to delete a machine (after any operation on it
// finishes); m.State says why (broken, draining).
func (p *poolState) markDelete(m *poolMachine, why string) {
	if m.deleting {
		return
	}
	m.deleting = true
	m.needsSleep = false
	if m.State != runnerapi.MachineBroken {
		m.State = runnerapi.MachineDraining
	}
	m.JobID, m.Attempt, m.RunnerName, m.Reserved, m.RunningJob = 0, 0, "", false, 0
	m.Since = p.now
	p.out = append(p.out, decision{kind: decideDelete, m: m, why: why})
}

// takeDecisions returns what was decided since the last call.
func (p *poolState) takeDecisions() []decision {
	out := p.out
	p.out = nil
	return out
}

// forget removes a machine from the inventory.
func (p *poolState) forget(m *poolMachine) {
	p.machines = slices.DeleteFunc(p.machines, func(x *poolMachine) bool { return x == m })
}

// leaseOf returns the machine leased to a job attempt, or nil.
func (p *poolState) leaseOf(jobID int64, attempt int) *poolMachine {
	for _, m := range p.machines {
		if m.JobID == jobID && m.Attempt == attempt && (m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining) {
			return m
		}
	}
	return nil
}

func (p *poolState) waiterOf(jobID int64, attempt int) *waiter {
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
func (p *poolState) dispatch() {
	if p.canning {
		return
	}
	p.serveQueue()
	if !p.winding && !p.now.Before(p.retryAt) {
		p.provisionForDemand()
	}
	if !p.winding && !p.now.Before(p.retryAt) {
		p.recycleExcluded()
	}
	p.sleepUnwanted()
}

// serveQueue leases free machines to waiting requests in arrival order.
func (p *poolState) serveQueue() {
	for i := 0; i < len(p.queue); {
		w := p.queue[i]
		m := p.pickFree(w.req)
		if m == nil {
			i++
			continue
		}
		p.lease(m, w)
		p.queue = slices.Delete(p.queue, i, i+1)
	}
}

// provisionForDemand starts provisioning while requests wait for new
// machines, or fewer than MinIdle are free, and the pool has room.
func (p *poolState) provisionForDemand() {
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
		p.markProvision(len(p.queue) > provisioning)
	}
}

// sleepUnwanted puts to sleep the idle machines nobody took.
func (p *poolState) sleepUnwanted() {
	for _, m := range p.machines {
		// Only a machine handed over by the dispatch right after its
		// provisioning is fresh (still running for its job).
		m.fresh = false
		if !p.winding && m.State == runnerapi.MachineIdle && m.needsSleep && m.op == "" && !m.deleting {
			p.markSleep(m)
		}
	}
}

// recycleExcluded breaks a deadlock: the pool is full, requests wait, and
// the only free machines are ones those requests exclude (a job retried
// after a machine that failed it). Such machines are deleted, the longest
// idle first, to make room for new ones.
func (p *poolState) recycleExcluded() {
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
	why := "recycled: excluded by the waiting jobs"
	if p.isolation() != pools.IsolationShared {
		// Machines of other repositories (per-repo) or used ones (fresh)
		// included: a waiting job is never starved by them.
		why = "recycled: excluded by the waiting jobs or bound to another repository by isolation " + p.isolation()
	}
	for _, m := range free[:min(short, len(free))] {
		p.markDelete(m, why)
	}
}

// capacityUsed counts machines against MaxMachines: every state but broken.
func (p *poolState) capacityUsed() int {
	n := 0
	for _, m := range p.machines {
		if m.State != runnerapi.MachineBroken {
			n++
		}
	}
	return n
}

// live counts machines the pool keeps: not broken, not being deleted.
func (p *poolState) live() int {
	n := 0
	for _, m := range p.machines {
		if m.State != runnerapi.MachineBroken && !m.deleting {
			n++
		}
	}
	return n
}

func (p *poolState) count(s runnerapi.MachineState) int {
	n := 0
	for _, m := range p.machines {
		if m.State == s {
			n++
		}
	}
	return n
}

// shortOpsInFlight: a sleep or a wake is running (deletes may be carried).
func (p *poolState) shortOpsInFlight() bool {
	return slices.ContainsFunc(p.machines, func(m *poolMachine) bool { return m.op == opSleep || m.op == opWake })
}

func provisionBackoff(failures int) time.Duration {
	d := provisionBackoffBase
	for i := 1; i < failures && d < provisionBackoffMax; i++ {
		d *= 2
	}
	return min(d, provisionBackoffMax)
}

// provisionDone settles a provisioning slot once: with its new machine, or
// freed after a failure (with a backoff). awake: the child left it running.
func (p *poolState) provisionDone(m *poolMachine, machineID string, err error, awake bool) {
	if p.v >= 1 && (m.State != runnerapi.MachineProvisioning || !slices.Contains(p.machines, m)) {
		return // settled already (by the child's report or its result)
	}
	id := m.Provision
	log := p.log
	if err != nil || machineID == "" {
		// The child deleted the machine it made, if any.
		if m.MachineID != "" {
			p.observeAt(m, dedalus.PhaseDestroyed, time.Time{})
		}
		// The slot frees; dispatch provisions again after a backoff if
		// there is still demand.
		p.machines = slices.DeleteFunc(p.machines, func(x *poolMachine) bool { return x == m })
		p.failures++
		p.retryAt = p.now.Add(provisionBackoff(p.failures))
		log.Warn("provisioning a runner machine failed", "child", id, "failures", p.failures, "retry_in", provisionBackoff(p.failures), "error", err)
		return
	}
	p.failures = 0
	p.retryAt = time.Time{}
	now := p.now
	m.MachineID, m.Provision = machineID, ""
	if p.cfg.Mode == pools.ModePersistent {
		m.PersistentRunner = runnerapi.PersistentRunnerName(p.cfg.Name, machineID)
	}
	if m.Awake.Last.IsZero() {
		// Its "created" signal was not seen: it ran from no earlier
		// than the provisioning's start.
		p.observeAt(m, dedalus.PhaseRunning, m.Since)
	}
	m.State, m.Since = runnerapi.MachineIdle, now
	if awake {
		m.awake, m.wokeAt, m.fresh, m.needsSleep = true, now, true, true
	} else {
		// The child put it to sleep as its last step (or failed to, and
		// autosleep will): asleep by the child's completion.
		p.observeAt(m, dedalus.PhaseSleeping, now)
	}
	log.Info("runner machine provisioned", "machine", machineID, "child", id)
	if p.live() > p.maxMachines {
		p.markDelete(m, "pool above max_machines")
	}
}

// provisionedSignal is the SignalMachineProvisioned handler: a child's
// report, which reaches the run that started it (before its result) or a
// later one (its slot carried).
func (p *poolState) provisionedSignal(r runnerapi.MachineProvisioned) {
	for _, m := range p.machines {
		if m.Provision == r.Provision && m.State == runnerapi.MachineProvisioning {
			var err error
			if r.Error != "" || r.MachineID == "" {
				err = fmt.Errorf("provisioning %s failed: %s", r.Provision, r.Error)
			}
			p.provisionDone(m, r.MachineID, err, r.Awake)
			return
		}
	}
}
