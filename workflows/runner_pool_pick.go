package workflows

import (
	"slices"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// Which free machine a request gets (by the pool's isolation mode), and
// its lease.

// pickFree returns the free machine a request should get, among those its
// isolation lets it have (mayRun): one awake and idle first, then one
// asleep, then one being woken or put to sleep (the lease is returned when
// that finishes); the most recently used first, so a hot set keeps warm
// caches and the rest stay asleep (and are deleted first when the pool
// shrinks). With isolation per-repo, a machine that last ran the request's
// repository goes before a never-used one, whatever their state.
func (p *poolState) pickFree(req runnerapi.AcquireRequest) *poolMachine {
	var best *poolMachine
	perRepo := p.isolation() == pools.IsolationPerRepo
	for _, m := range p.machines {
		if !p.leasable(m, req) {
			continue
		}
		if best == nil || freeRank(m, perRepo) < freeRank(best, perRepo) ||
			(freeRank(m, perRepo) == freeRank(best, perRepo) && m.Since.After(best.Since)) {
			best = m
		}
	}
	return best
}

// leasable: m is free, not excluded by req, and its isolation lets it run
// req's job.
func (p *poolState) leasable(m *poolMachine, req runnerapi.AcquireRequest) bool {
	if (m.State != runnerapi.MachineIdle && m.State != runnerapi.MachineWaking) || m.deleting || slices.Contains(req.Exclude, m.MachineID) {
		return false
	}
	return p.mayRun(m, req.Repo)
}

// freeRank orders free machines for pickFree (lower first).
func freeRank(m *poolMachine, perRepo bool) int {
	r := 0
	if perRepo && m.Jobs == 0 {
		r = 4 // hot caches for the repository first
	}
	switch {
	case m.State == runnerapi.MachineIdle && m.op == "" && m.awake:
		return r
	case m.State == runnerapi.MachineIdle && m.op == "":
		return r + 1
	case m.State == runnerapi.MachineWaking:
		return r + 2
	default:
		return r + 3
	}
}

// isolation is the isolation mode the run applies: shared before
// runnerPoolIsolationVersion and for persistent pools (GitHub picks the
// runner), else the configuration's.
func (p *poolState) isolation() string {
	if p.iso < 1 || p.cfg.Mode == pools.ModePersistent {
		return pools.IsolationShared
	}
	return p.cfg.IsolationMode()
}

// mayRun reports whether a free machine may run a job of repo under the
// pool's isolation. A machine that never ran a job may run any; per-repo:
// one that ran only repo's jobs; fresh: none that ran a job. A request
// without a repository (an older job) gets only never-used machines.
func (p *poolState) mayRun(m *poolMachine, repo string) bool {
	switch p.isolation() {
	case pools.IsolationShared:
		return true
	case pools.IsolationPerRepo:
		return m.Jobs == 0 || (repo != "" && m.Repo == repo && !m.Mixed)
	default: // fresh
		return m.Jobs == 0
	}
}

// Lease affinities (drydock_runner_leases_total{affinity}): the machine
// last ran the job's repository, never ran a job, or ran another's.
const (
	affinitySameRepo = "same_repo"
	affinityFresh    = "fresh"
	affinityOther    = "other"
)

func affinityOf(m *poolMachine, repo string) string {
	switch {
	case m.Jobs == 0:
		return affinityFresh
	case repo != "" && m.Repo == repo && !m.Mixed:
		return affinitySameRepo
	default:
		return affinityOther
	}
}

func (p *poolState) lease(m *poolMachine, w *waiter) {
	if p.iso >= 1 {
		aff := affinityOf(m, w.req.Repo)
		if p.leases != nil {
			p.leases(aff).Inc(1)
		}
		if m.Jobs > 0 && m.Repo != w.req.Repo {
			m.Mixed = true
		}
		m.Repo = w.req.Repo
		p.log.Info("machine leased by isolation", "machine", m.MachineID, "job", w.req.JobID, "repo", w.req.Repo,
			"isolation", p.isolation(), "affinity", aff)
	}
	m.State = runnerapi.MachineBusy
	m.JobID, m.Attempt = w.req.JobID, w.req.Attempt
	m.RunnerName = runnerapi.RunnerName(p.cfg.Name, w.req.JobID, w.req.Attempt)
	m.Jobs++
	m.Since = p.now
	m.Reserved = !w.arrived
	m.needsSleep = false
	w.m, w.fresh = m, m.fresh
	m.fresh = false
	p.log.Info("machine leased", "machine", m.MachineID, "job", w.req.JobID, "attempt", w.req.Attempt, "fresh", w.fresh)
}
