package workflows

import (
	"fmt"
	"slices"
	"time"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// The pool's signal rules: how releases, resizes, drains, prewarms and
// withdrawals change the state (see runner_pool_state.go).

// findRelease finds the machine a release is about. byLease reports a match
// on the lease's own runner name, which names one lease (job and attempt).
func (p *poolState) findRelease(r runnerapi.ReleaseRequest) (m *poolMachine, byLease bool) {
	if p.v >= 1 && r.JobID != 0 && r.Attempt != 0 {
		// A job attempt's own release finds its lease wherever it is now
		// (a persistent runner's job may have swapped it).
		if m := p.leaseOf(r.JobID, r.Attempt); m != nil && !m.deleting {
			return m, true
		}
	}
	if m := p.machineWhere(func(m *poolMachine) bool { return r.MachineID != "" && m.MachineID == r.MachineID }); m != nil {
		return m, false
	}
	if r.RunnerName == "" {
		return nil, false
	}
	if m := p.machineWhere(func(m *poolMachine) bool { return m.RunnerName == r.RunnerName && m.MachineID != "" }); m != nil {
		return m, true
	}
	// Persistent mode: GitHub reports the machine's own runner.
	return p.machineWhere(func(m *poolMachine) bool { return m.PersistentRunner != "" && m.PersistentRunner == r.RunnerName }), false
}

// machineWhere is the first machine that match accepts, or nil.
func (p *poolState) machineWhere(match func(*poolMachine) bool) *poolMachine {
	for _, m := range p.machines {
		if match(m) {
			return m
		}
	}
	return nil
}

// release is the SignalRelease handler.
func (p *poolState) release(r runnerapi.ReleaseRequest) {
	if p.acct >= 1 && p.releasePersistent(r) {
		return
	}
	m := p.releasable(r)
	if m == nil {
		return
	}
	log := p.log
	switch {
	case r.Broken:
		log.Warn("runner machine broken: deleting it", "machine", m.MachineID, "job", r.JobID, "reason", r.Reason)
		m.State = runnerapi.MachineBroken
		p.markDelete(m, brokenReason(r))
	case p.crossedRepo(m, r):
		// GitHub handed the machine's runner a job of another repository
		// than the one the machine is bound to: it may carry that job's
		// leftovers to its own repository's next job. It goes.
		log.Warn("runner machine ran a job of another repository: deleting it", "machine", m.MachineID,
			"bound_to", m.Repo, "ran", r.Repo, "job", r.JobID)
		m.Mixed = true
		p.markDelete(m, "isolation "+p.isolation()+": ran a job of another repository")
	case p.unknownRun(m, r):
		// A withdrawal, an expired lease or a runner gone after some job:
		// what ran on the machine, and whose, is unknown.
		log.Warn("runner machine released without knowing what ran on it: deleting it", "machine", m.MachineID,
			"bound_to", m.Repo, "job", r.JobID, "reason", r.Reason)
		p.markDelete(m, "isolation "+p.isolation()+": what ran on it is unknown")
	case p.acct >= 1:
		// The lease ends; a machine whose runner runs a job stays busy.
		m.JobID, m.Attempt, m.RunnerName, m.Reserved = 0, 0, "", false
		p.settle(m)
	default:
		// It ran a job, so it is awake; if nobody waiting takes it, it sleeps.
		p.free(m)
	}
}

// releasable is the machine a release frees, or nil (logged) when the
// release is to be ignored: an unknown machine, one being deleted, a stale
// release, or a machine that is not leased. A completion on a persistent
// runner that another job leased swaps the two jobs' leases first.
func (p *poolState) releasable(r runnerapi.ReleaseRequest) *poolMachine {
	log := p.log
	m, byLease := p.findRelease(r)
	if m == nil {
		log.Warn("release of an unknown machine ignored", "machine", r.MachineID, "runner", r.RunnerName, "job", r.JobID)
		return nil
	}
	if m.deleting {
		log.Info("release of a machine being deleted ignored", "machine", m.MachineID)
		return nil
	}
	leased := m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining
	if leased && p.staleLease(m, r, byLease) {
		return nil
	}
	if !leased && !(r.Broken && r.JobID == 0) {
		// Only an operator (no job) may mark a free machine broken.
		log.Info("release of a machine that is not leased ignored", "machine", m.MachineID, "state", m.State)
		return nil
	}
	return m
}

// staleLease reports a late or duplicate release of leased m (logged), which
// must not free a later lease. The lease's runner name names the lease,
// whichever job GitHub ran on it; a machine ID or a persistent runner's name
// must come with the lease's job (and attempt, if given).
func (p *poolState) staleLease(m *poolMachine, r runnerapi.ReleaseRequest, byLease bool) bool {
	if p.v >= 1 && p.acct < 1 && p.ranOnPersistent(m, r) {
		// The completion of job r.JobID on this machine's runner, which
		// another job leased: this machine is free now, and the machine
		// r.JobID leased goes to that other job (whose job its runner is
		// running, or will run), never freed under it.
		p.swapLease(m, r.JobID)
		return false
	}
	if !byLease && staleRelease(m, r) {
		p.log.Warn("stale release ignored", "machine", m.MachineID, "release_job", r.JobID, "release_attempt", r.Attempt, "lease_job", m.JobID, "lease_attempt", m.Attempt)
		return true
	}
	return false
}

// staleRelease: the release names another job or attempt than m's lease.
func staleRelease(m *poolMachine, r runnerapi.ReleaseRequest) bool {
	return (r.JobID != 0 && r.JobID != m.JobID) || (r.Attempt != 0 && r.Attempt != m.Attempt)
}

// brokenReason is the delete reason of a machine released broken.
func brokenReason(r runnerapi.ReleaseRequest) string {
	reason := "broken"
	if r.Reason != "" {
		reason += ": " + r.Reason
	}
	return reason
}

// unknownRun: an isolating pool frees a machine only on a clean release
// (nothing ran) or the completion of a job of the machine's repository.
func (p *poolState) unknownRun(m *poolMachine, r runnerapi.ReleaseRequest) bool {
	return p.iso >= 1 && p.isolation() == pools.IsolationPerRepo && !r.Clean && (r.Repo == "" || r.Repo != m.Repo)
}

// crossedRepo: a completed job's release says the job, of repository
// r.Repo, ran on m, which an isolating pool bound to another repository.
func (p *poolState) crossedRepo(m *poolMachine, r runnerapi.ReleaseRequest) bool {
	return p.iso >= 1 && p.isolation() != pools.IsolationShared && r.Repo != "" && m.Repo != "" && m.Repo != r.Repo
}

// resize is the SignalResize handler.
func (p *poolState) resize(r runnerapi.ResizeRequest) {
	log := p.log
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
		p.markDelete(m, "pool above max_machines")
	}
}

// drain is the SignalDrain handler: idle machines are deleted now, leased
// ones when released. Machines still being provisioned are new: kept.
func (p *poolState) drain(r runnerapi.DrainRequest) {
	found := false
	for _, m := range slices.Clone(p.machines) {
		if m.MachineID == "" || (r.MachineID != "" && m.MachineID != r.MachineID) || m.deleting {
			continue
		}
		found = true
		switch m.State {
		case runnerapi.MachineIdle, runnerapi.MachineWaking:
			p.markDelete(m, "drained")
		case runnerapi.MachineBusy:
			m.State = runnerapi.MachineDraining
		}
	}
	if !found && r.MachineID != "" {
		p.log.Warn("drain of an unknown machine ignored", "machine", r.MachineID)
	}
}

// prewarm is the SignalPrewarm handler: up to Count idle machines are awake
// afterwards (those already awake count); they stay idle and autosleep if
// no job comes.
func (p *poolState) prewarm(r runnerapi.PrewarmRequest) {
	awake, asleep := p.prewarmCounts()
	n := r.Count - awake
	for _, m := range asleep {
		if n <= 0 {
			break
		}
		if m.op != "" {
			continue // being put to sleep: it is woken next time
		}
		p.markWake(m)
		n--
	}
}

// prewarmCounts counts the idle machines awake (or waking) within the
// autosleep window, and lists the idle ones asleep (or being put to sleep).
func (p *poolState) prewarmCounts() (awake int, asleep []*poolMachine) {
	window := autosleepOf(p.cfg)
	now := p.now
	for _, m := range p.machines {
		if m.deleting {
			continue
		}
		switch {
		case m.State == runnerapi.MachineWaking:
			awake++
		case m.State == runnerapi.MachineIdle && m.op == "" && m.awake && now.Sub(m.wokeAt) < window:
			awake++
		case m.State == runnerapi.MachineIdle && m.op != opDelete:
			asleep = append(asleep, m)
		}
	}
	return awake, asleep
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
func (p *poolState) expireReservations() {
	log := p.log
	p.queue = slices.DeleteFunc(p.queue, func(w *waiter) bool {
		if !w.arrived {
			log.Warn("carried acquire request expired", "job", w.req.JobID, "attempt", w.req.Attempt)
		}
		return !w.arrived
	})
	for _, m := range slices.Clone(p.machines) {
		if m.Reserved {
			log.Warn("reserved lease expired", "machine", m.MachineID, "job", m.JobID, "attempt", m.Attempt)
			p.release(runnerapi.ReleaseRequest{MachineID: m.MachineID, JobID: m.JobID, Attempt: m.Attempt})
		}
	}
}

// applySignal folds one signal into the state.
func (p *poolState) applySignal(s runnerapi.PoolSignal) {
	switch {
	case s.Release != nil:
		p.release(*s.Release)
	case s.Resize != nil:
		p.resize(*s.Resize)
	case s.Drain != nil:
		p.drain(*s.Drain)
	case s.Withdraw != nil:
		p.withdraw(*s.Withdraw)
	case s.Provisioned != nil:
		p.provisionedSignal(*s.Provisioned)
	case s.Started != nil:
		p.runnerStarted(*s.Started)
	case s.Prewarm != nil:
		if p.winding {
			// A wake now would hold up the handover: the next run does it.
			p.pending = append(p.pending, s)
			return
		}
		p.prewarm(*s.Prewarm)
	}
}

// created is the SignalMachineCreated handler: the pool owns the machine
// of a provisioning slot from its creation.
func (p *poolState) created(mc runnerapi.MachineCreated) {
	for _, m := range p.machines {
		if m.Provision == mc.Provision && m.MachineID == "" {
			m.MachineID = mc.MachineID
			p.observeAt(m, dedalus.PhaseRunning, mc.RunningAt)
		}
	}
}

// withdraw is the SignalWithdraw handler: the job attempt's queue place
// goes (its waiting acquire fails) and a machine leased to it is returned.
func (p *poolState) withdraw(r runnerapi.WithdrawRequest) {
	match := func(job int64, attempt int) bool {
		return job == r.JobID && (r.Attempt == 0 || attempt == r.Attempt)
	}
	log := p.log
	p.withdrawn = append(p.withdrawn, r)
	if len(p.withdrawn) > maxWithdrawnKept {
		p.withdrawn = slices.Delete(p.withdrawn, 0, len(p.withdrawn)-maxWithdrawnKept)
	}
	p.queue = slices.DeleteFunc(p.queue, func(w *waiter) bool {
		if !match(w.req.JobID, w.req.Attempt) {
			return false
		}
		log.Info("acquire request withdrawn", "job", w.req.JobID, "attempt", w.req.Attempt, "reason", r.Reason)
		w.withdrawn = true
		return true
	})
	for _, m := range slices.Clone(p.machines) {
		if (m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining) && !m.deleting && m.JobID != 0 && match(m.JobID, m.Attempt) {
			p.release(runnerapi.ReleaseRequest{MachineID: m.MachineID, JobID: m.JobID, Attempt: m.Attempt, Reason: "withdrawn: " + r.Reason})
		}
	}
}

// wasWithdrawn reports an acquire for a job attempt withdrawn before.
func (p *poolState) wasWithdrawn(req runnerapi.AcquireRequest) bool {
	return slices.ContainsFunc(p.withdrawn, func(r runnerapi.WithdrawRequest) bool {
		return r.JobID == req.JobID && (r.Attempt == 0 || r.Attempt == req.Attempt)
	})
}

// ranOnPersistent reports a completion of another job than m's lease
// holder on m's persistent runner.
func (p *poolState) ranOnPersistent(m *poolMachine, r runnerapi.ReleaseRequest) bool {
	return r.MachineID == "" && r.RunnerName != "" && m.PersistentRunner == r.RunnerName && r.JobID != 0 && r.JobID != m.JobID
}

// swapLease: job ran on m's runner, which m's holder leased. The machine
// job leased (whose runner, in persistent mode, runs m's holder's job, or
// will) takes over m's lease; m is then released by the caller.
func (p *poolState) swapLease(m *poolMachine, job int64) {
	for _, o := range p.machines {
		if o == m || o.deleting || o.JobID != job || (o.State != runnerapi.MachineBusy && o.State != runnerapi.MachineDraining) {
			continue
		}
		p.log.Info("job ran on another job's machine: leases swapped", "job", job, "ran_on", m.MachineID,
			"its_lease", o.MachineID, "now_leased_to", m.JobID)
		o.JobID, o.Attempt, o.RunnerName, o.Reserved = m.JobID, m.Attempt, m.RunnerName, m.Reserved
		return
	}
}

// holdsForOthers: a queue place, a lease or a carried provisioning slot
// depends on a workflow outside this run.
func (p *poolState) holdsForOthers() bool {
	return len(p.queue) > 0 || slices.ContainsFunc(p.machines, func(m *poolMachine) bool {
		return m.carried || ((m.JobID != 0 || m.RunningJob != 0) && (m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining))
	})
}

// expireGone gives back what gone holders held.
func (p *poolState) expireGone(res activities.LeaseCheckResult) {
	log := p.log
	for _, h := range res.Gone {
		if h.Attempt == 0 && p.acct >= 1 {
			log.Warn("running job is gone: its runner no longer counts busy", "job", h.JobID, "runner", h.RunnerName)
			p.expireRunning(h)
			continue
		}
		log.Warn("lease holder is gone: its place or lease expires", "job", h.JobID, "attempt", h.Attempt)
		p.withdraw(runnerapi.WithdrawRequest{JobID: h.JobID, Attempt: h.Attempt, Reason: "job workflow no longer running"})
	}
	var seen []string
	for _, id := range res.ProvisionsClosed {
		i := slices.IndexFunc(p.machines, func(m *poolMachine) bool {
			return m.carried && m.Provision == id && m.State == runnerapi.MachineProvisioning
		})
		if i < 0 {
			continue
		}
		if !slices.Contains(p.closedOnce, id) {
			seen = append(seen, id)
			continue
		}
		m := p.machines[i]
		log.Warn("provisioning child closed without reporting: slot given up", "child", id, "machine", m.MachineID)
		if m.MachineID != "" {
			// It may have made a machine nobody was told about.
			m.State = runnerapi.MachineBroken
			p.markDelete(m, "provisioning child closed without reporting")
			continue
		}
		p.provisionDone(m, "", fmt.Errorf("provisioning child %s closed without reporting", id), false)
	}
	p.closedOnce = seen
}

// runnerStarted is the SignalRunnerStarted handler (persistent mode). With
// runnerPoolAccountingVersion, see runningStarted. Before it: the job runs
// on m's runner, which another job leased; the two jobs' leases are
// swapped, so the busy machine stays leased to the job it runs and the
// other job's own release frees a machine whose runner is free.
func (p *poolState) runnerStarted(r runnerapi.RunnerStarted) {
	if p.acct >= 1 {
		p.runningStarted(r)
		return
	}
	var m, o *poolMachine
	for _, x := range p.machines {
		if x.deleting || (x.State != runnerapi.MachineBusy && x.State != runnerapi.MachineDraining) {
			continue
		}
		if x.PersistentRunner != "" && x.PersistentRunner == r.RunnerName {
			m = x
		} else if x.JobID == r.JobID {
			o = x
		}
	}
	if m == nil || o == nil || m.JobID == r.JobID {
		return
	}
	p.log.Info("job runs on another job's machine: leases swapped", "job", r.JobID, "runs_on", m.MachineID, "its_lease", o.MachineID, "other_job", m.JobID)
	m.JobID, o.JobID = o.JobID, m.JobID
	m.Attempt, o.Attempt = o.Attempt, m.Attempt
	m.RunnerName, o.RunnerName = o.RunnerName, m.RunnerName
	m.Reserved, o.Reserved = o.Reserved, m.Reserved
}
