package workflows

import (
	"slices"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// Persistent-mode accounting (runnerPoolAccountingVersion). A machine's
// persistent runner runs job after job, any job with the pool's labels,
// leased or not, on this machine or another. The pool tracks two things
// per machine, apart:
//   - its lease (JobID, Attempt): the job attempt that acquired it and
//     woke it so that a runner would come for that job. A lease never
//     moves. It ends with its job: the job's completion on this machine's
//     runner, the job attempt's own release (it ran elsewhere, or gave
//     up), its withdrawal, or the liveness check.
//   - RunningJob: the job its runner runs, from the job's runner_started
//     to its completion (the release naming the runner).
// A machine is busy while either holds, and free (idle, put to sleep or
// handed to the next waiting job) only when neither does: a machine whose
// runner is busy is never released, slept or handed over.

// maxFinishedKept bounds the recent completions a run remembers (a late
// runner_started of a completed job is ignored).
const maxFinishedKept = 256

// byPersistentRunner returns the machine whose persistent runner is name.
func (p *poolState) byPersistentRunner(name string) *poolMachine {
	if name == "" {
		return nil
	}
	for _, m := range p.machines {
		if m.PersistentRunner == name && m.MachineID != "" {
			return m
		}
	}
	return nil
}

// busy: leased, or its runner runs a job.
func busy(m *poolMachine) bool {
	return m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining
}

// releasePersistent handles, with the accounting of
// runnerPoolAccountingVersion, the releases it knows: a job's completion
// on a machine's persistent runner, and a persistent machine's lease given
// back by its job attempt. It reports whether it handled r.
func (p *poolState) releasePersistent(r runnerapi.ReleaseRequest) bool {
	if r.MachineID == "" && r.JobID != 0 {
		if m := p.byPersistentRunner(r.RunnerName); m != nil {
			p.completedOn(m, r.JobID)
			return true
		}
	}
	if r.JobID == 0 || r.Attempt == 0 {
		return false
	}
	m := p.leaseOf(r.JobID, r.Attempt)
	switch {
	case m != nil && m.PersistentRunner != "" && !m.deleting:
		p.endLease(m, r)
		return true
	case m == nil && slices.ContainsFunc(p.machines, func(m *poolMachine) bool { return m.MachineID == r.MachineID && m.PersistentRunner != "" }):
		// Its lease ended already (its job completed on this machine's
		// runner, or it was withdrawn): whatever the machine does now is
		// another job's.
		p.log.Info("release of a lease given back already ignored", "machine", r.MachineID, "job", r.JobID, "attempt", r.Attempt)
		return true
	}
	return false
}

// completedOn: job completed on m's persistent runner. The runner is no
// longer running it; if job leased m, its lease ends (the job it woke m
// for is done). m is free if nothing else holds it.
func (p *poolState) completedOn(m *poolMachine, job int64) {
	p.finished = append(p.finished, job)
	if len(p.finished) > maxFinishedKept {
		p.finished = slices.Delete(p.finished, 0, len(p.finished)-maxFinishedKept)
	}
	if m.deleting {
		return
	}
	if m.RunningJob == job || m.RunningJob == 0 {
		// (Another job: its start was reported before this completion
		// arrived; the runner runs it now.)
		m.RunningJob = 0
	}
	if busy(m) && m.JobID == job {
		p.log.Info("job completed on the machine it leased", "machine", m.MachineID, "job", job)
		m.JobID, m.Attempt, m.RunnerName, m.Reserved = 0, 0, "", false
	} else if m.JobID != 0 {
		p.log.Info("job completed on another job's machine: its lease stands", "machine", m.MachineID, "job", job, "lease_job", m.JobID)
	}
	if busy(m) {
		p.settle(m)
	}
}

// endLease ends m's lease, given back by its job attempt (r): m is free
// unless its runner runs a job. A broken machine is deleted.
func (p *poolState) endLease(m *poolMachine, r runnerapi.ReleaseRequest) {
	if r.Broken {
		p.log.Warn("runner machine broken: deleting it", "machine", m.MachineID, "job", r.JobID, "reason", r.Reason)
		m.State = runnerapi.MachineBroken
		reason := "broken"
		if r.Reason != "" {
			reason += ": " + r.Reason
		}
		p.markDelete(m, reason)
		return
	}
	m.JobID, m.Attempt, m.RunnerName, m.Reserved = 0, 0, "", false
	p.settle(m)
}

// settle frees a busy machine that nothing holds any more: neither a lease
// nor a job on its runner.
func (p *poolState) settle(m *poolMachine) {
	if m.JobID != 0 || m.RunningJob != 0 {
		if m.JobID == 0 {
			p.log.Info("machine kept: its runner runs a job", "machine", m.MachineID, "job", m.RunningJob)
		}
		return
	}
	p.free(m)
}

// free returns a machine whose lease ended: deleted if draining or above
// max_machines, else idle (awake: it sleeps unless a waiting job takes it).
func (p *poolState) free(m *poolMachine) {
	switch {
	case m.State == runnerapi.MachineDraining:
		p.markDelete(m, "drained")
	case p.live() > p.maxMachines:
		p.markDelete(m, "pool above max_machines")
	case p.isolation() == pools.IsolationFresh:
		p.markDelete(m, "isolation fresh: one job per machine")
	default:
		m.State, m.Since = runnerapi.MachineIdle, p.now
		m.JobID, m.Attempt, m.RunnerName, m.Reserved = 0, 0, "", false
		m.awake, m.wokeAt, m.needsSleep = true, p.now, true
	}
}

// runningStarted is the SignalRunnerStarted handler with the accounting
// of runnerPoolAccountingVersion: the machine whose runner runs the job is
// busy until the job's completion, leased or not; no lease moves.
func (p *poolState) runningStarted(r runnerapi.RunnerStarted) {
	m := p.byPersistentRunner(r.RunnerName)
	if m == nil || m.deleting || r.JobID == 0 {
		return
	}
	if slices.Contains(p.finished, r.JobID) {
		p.log.Info("runner start of a completed job ignored", "machine", m.MachineID, "job", r.JobID)
		return
	}
	m.RunningJob = r.JobID
	if m.State == runnerapi.MachineIdle || m.State == runnerapi.MachineWaking {
		// An awake free machine's runner took a queued job.
		p.log.Info("free machine's runner runs a job: busy", "machine", m.MachineID, "job", r.JobID)
		m.State, m.Since = runnerapi.MachineBusy, p.now
		m.needsSleep, m.fresh = false, false
	}
}

// expireRunning: a running job's RunnerJob is gone and GitHub reports the
// machine's runner idle (h from the liveness check, Attempt 0): the runner
// no longer counts as running it.
func (p *poolState) expireRunning(h activities.LeaseHolder) {
	for _, m := range p.machines {
		if m.RunningJob == h.JobID && m.PersistentRunner == h.RunnerName && !m.deleting {
			m.RunningJob = 0
			if busy(m) {
				p.settle(m)
			}
		}
	}
}
