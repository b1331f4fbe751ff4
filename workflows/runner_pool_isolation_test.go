package workflows

import (
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// Isolation modes (issue 14 point 2), without Temporal.

// leaseTally counts leases by affinity, as drydock_runner_leases_total.
type leaseTally map[string]int64

type tallyCounter struct {
	t   leaseTally
	aff string
}

func (c tallyCounter) Inc(n int64) { c.t[c.aff] += n }

func isoState(iso string, minIdle, maxMachines int, machines ...*poolMachine) (*poolState, leaseTally) {
	p := newState(minIdle, maxMachines, machines...)
	p.cfg.Isolation = iso
	p.iso, p.acct = 1, 1 // as every new run
	t := leaseTally{}
	p.leases = func(aff string) client.MetricsCounter { return tallyCounter{t, aff} }
	return p, t
}

// usedBy is an idle machine that last ran repo's jobs.
func usedBy(id, repo string, awake bool, since time.Duration) *poolMachine {
	m := idleMachine(id)
	m.Repo, m.Jobs, m.awake = repo, 3, awake
	m.Since = stateEpoch.Add(-since)
	return m
}

func (p *poolState) waitRepo(job int64, repo string) *waiter {
	w := p.wait(job)
	w.req.Repo = repo
	return w
}

func TestIsolationPerRepoPrefersHotThenUnusedAndNeverCrosses(t *testing.T) {
	hotA := usedBy("dm-a", "acme/a", false, time.Hour) // asleep
	unused := idleMachine("dm-new")
	unused.awake = true // awake, but caches cold
	otherB := usedBy("dm-b", "acme/b", true, time.Minute)
	p, tally := isoState(pools.IsolationPerRepo, 0, 4, otherB, unused, hotA)

	wa := p.waitRepo(1, "acme/a")
	p.dispatch()
	assert.Same(t, hotA, wa.m, "the machine that last ran acme/a, asleep, before an awake unused one and another repository's")

	wc := p.waitRepo(2, "acme/c")
	p.dispatch()
	assert.Same(t, unused, wc.m, "a repository with no machine of its own gets a never-used one, never acme/b's")
	assert.Equal(t, "acme/c", unused.Repo, "the machine is bound to its first repository")

	wa2 := p.waitRepo(3, "acme/a")
	p.takeDecisions()
	p.dispatch()
	assert.Nil(t, wa2.m, "acme/b's idle machine is not taken by acme/a")
	assert.Equal(t, runnerapi.MachineIdle, otherB.State)
	ds := p.takeDecisions()
	require.Equal(t, []decisionKind{decideProvision}, kinds(ds), "a new machine for the waiting job, within max_machines")
	assert.True(t, ds[0].forWaiter)

	assert.Equal(t, leaseTally{affinitySameRepo: 1, affinityFresh: 1}, tally)

	// The new machine arrives: the waiting acme/a job gets it.
	p.provisionDone(ds[0].m, "dm-new2", nil, true)
	p.dispatch()
	require.NotNil(t, wa2.m)
	assert.Equal(t, "dm-new2", wa2.m.MachineID)
	assert.Equal(t, "acme/a", wa2.m.Repo)

	// Released, it only serves acme/a: an acme/c job after it waits for c's.
	p.release(runnerapi.ReleaseRequest{MachineID: "dm-new2", JobID: 3, Repo: "acme/a"})
	p.takeDecisions()
	wcc := p.waitRepo(4, "acme/c")
	p.dispatch()
	assert.Nil(t, wcc.m)
	p.release(runnerapi.ReleaseRequest{MachineID: "dm-new", JobID: 2, Repo: "acme/c"})
	p.dispatch()
	assert.Same(t, unused, wcc.m, "acme/c's own machine, once free")
	assert.Equal(t, leaseTally{affinitySameRepo: 2, affinityFresh: 2}, tally)
}

func TestIsolationPerRepoAtMaxRecyclesAnotherRepositorysIdleMachine(t *testing.T) {
	// The pool is full of acme/a's machines, two of them idle: an acme/b job
	// is not starved. The longest-idle one is deleted and a new one made.
	older := usedBy("dm-a1", "acme/a", false, 2*time.Hour)
	newer := usedBy("dm-a2", "acme/a", true, time.Minute)
	busy := leasedMachine("dm-a3", 9, "")
	busy.Repo, busy.Jobs = "acme/a", 1
	p, _ := isoState(pools.IsolationPerRepo, 0, 3, older, newer, busy)
	wb := p.waitRepo(1, "acme/b")
	p.dispatch()
	assert.Nil(t, wb.m)
	ds := p.takeDecisions()
	require.Equal(t, []decisionKind{decideDelete}, kinds(ds), "at max_machines: make room, nothing else")
	assert.Same(t, older, ds[0].m, "the least recently used idle machine of another repository")
	assert.Contains(t, ds[0].why, "bound to another repository")
	assert.False(t, newer.deleting)

	p.forget(older) // the delete finished
	p.dispatch()
	ds = p.takeDecisions()
	require.Equal(t, []decisionKind{decideProvision}, kinds(ds))
	p.provisionDone(ds[0].m, "dm-b1", nil, true)
	p.dispatch()
	require.NotNil(t, wb.m)
	assert.Equal(t, "dm-b1", wb.m.MachineID)

	// An acme/a job meanwhile still takes acme/a's idle machine.
	wa := p.waitRepo(2, "acme/a")
	p.dispatch()
	assert.Same(t, newer, wa.m)
}

func TestIsolationSharedTakesAnyMachineAndMarksItMixed(t *testing.T) {
	b := usedBy("dm-b", "acme/b", true, time.Minute)
	p, tally := isoState(pools.IsolationShared, 0, 1, b)
	w := p.waitRepo(1, "acme/a")
	p.dispatch()
	assert.Same(t, b, w.m, "shared: any free machine")
	assert.True(t, b.Mixed)
	assert.Equal(t, leaseTally{affinityOther: 1}, tally)
	p.release(runnerapi.ReleaseRequest{MachineID: "dm-b", JobID: 1})

	// The pool switched to per-repo: a machine that ran two repositories'
	// jobs runs neither's again.
	p.cfg.Isolation = pools.IsolationPerRepo
	w2 := p.waitRepo(2, "acme/a")
	p.dispatch()
	assert.Nil(t, w2.m)
	assert.Equal(t, []decisionKind{decideDelete}, kinds(p.takeDecisions()), "at max_machines: the mixed machine is recycled")
}

func TestIsolationFreshUsesAMachineOnceAndDeletesIt(t *testing.T) {
	unused := idleMachine("dm-new")
	used := usedBy("dm-a", "acme/a", true, time.Minute)
	p, tally := isoState(pools.IsolationFresh, 1, 3, used, unused)
	w := p.waitRepo(1, "acme/a")
	p.dispatch()
	assert.Same(t, unused, w.m, "fresh: only a never-used machine, even for the repository that ran the other")
	p.takeDecisions()

	p.release(runnerapi.ReleaseRequest{MachineID: "dm-new", JobID: 1})
	ds := p.takeDecisions()
	require.Equal(t, []decisionKind{decideDelete}, kinds(ds), "deleted after its job")
	assert.Same(t, unused, ds[0].m)
	assert.Contains(t, ds[0].why, "isolation fresh")
	assert.Equal(t, leaseTally{affinityFresh: 1}, tally)

	w2 := p.waitRepo(2, "acme/a")
	p.dispatch()
	assert.Nil(t, w2.m, "the used machine is not reused")
	assert.Contains(t, kinds(p.takeDecisions()), decideProvision)
}

func TestIsolationUpgradedPoolTreatsUsedMachinesAsBoundToAnUnknownRepository(t *testing.T) {
	// Carried from a run before runner-pool-isolation: it ran jobs of a
	// repository nobody recorded.
	old := idleMachine("dm-old")
	old.Jobs = 5
	unused := idleMachine("dm-unused")
	p, _ := isoState(pools.IsolationPerRepo, 0, 5, old, unused)
	w := p.waitRepo(1, "acme/a")
	p.dispatch()
	assert.Same(t, unused, w.m)
	w2 := p.waitRepo(2, "acme/a")
	p.takeDecisions()
	p.dispatch()
	assert.Nil(t, w2.m, "the machine of an unknown repository is not leased")

	// A request without a repository (a job started before the upgrade)
	// gets a never-used machine, which then runs no other job.
	p.release(runnerapi.ReleaseRequest{MachineID: "dm-unused", JobID: 1, Repo: "acme/a"})
	p.dispatch()
	p.takeDecisions()
	p.provisionDone(p.machines[len(p.machines)-1], "dm-p", nil, true)
	nr := p.waitRepo(3, "")
	p.dispatch()
	require.NotNil(t, nr.m)
	p.release(runnerapi.ReleaseRequest{MachineID: nr.m.MachineID, JobID: 3})
	assert.False(t, p.mayRun(nr.m, ""))
	assert.False(t, p.mayRun(nr.m, "acme/a"))
}

func TestIsolationBeforeTheVersionAndPersistentPoolsShare(t *testing.T) {
	b := usedBy("dm-b", "acme/b", true, time.Minute)
	p, tally := isoState(pools.IsolationPerRepo, 0, 1, b)
	p.iso = 0 // a run before runner-pool-isolation
	w := p.waitRepo(1, "acme/a")
	p.dispatch()
	assert.Same(t, b, w.m)
	assert.Equal(t, "acme/b", b.Repo, "nothing recorded before the version")
	assert.Empty(t, tally)

	b2 := usedBy("dm-b", "acme/b", true, time.Minute)
	p, _ = isoState(pools.IsolationPerRepo, 0, 1, b2)
	p.cfg.Mode = pools.ModePersistent // GitHub picks a persistent runner
	assert.Equal(t, pools.IsolationShared, p.isolation())
}

// jobOf sends job's acquire from repo.
func (a *acquires) jobOf(env *testsuite.TestWorkflowEnvironment, jobID int64, repo string) {
	a.send(env, runnerapi.AcquireUpdateID(jobID, 1), runnerapi.AcquireRequest{JobID: jobID, Attempt: 1, Repo: repo})
}

// Two repositories' jobs on one per-repo pool, interleaved: every machine
// runs one repository's jobs only, each repository's later jobs get its own
// (hot) machine, and the leases are counted by affinity.
func TestPoolPerRepoNeverSharesAMachineBetweenRepositories(t *testing.T) {
	m := newMetricsCapture()
	env, w := newPoolEnv(t, func(w *poolWorld) { w.metrics = m })
	acq := newAcquires()
	repoOf := map[int64]string{}
	ranBy := map[string]map[string]bool{} // machine -> repositories
	const jobs = 8
	for i := int64(1); i <= jobs; i++ {
		repo := "acme/a"
		if i%2 == 0 {
			repo = "acme/b"
		}
		repoOf[i] = repo
		job := i
		// One job at a time, a minute apart: each finds the other
		// repository's machine idle.
		env.RegisterDelayedCallback(func() { acq.jobOf(env, job, repo) }, time.Duration(i)*time.Minute)
		env.RegisterDelayedCallback(func() {
			l, ok := acq.lease(job)
			require.True(t, ok, "job %d leased", job)
			if ranBy[l.MachineID] == nil {
				ranBy[l.MachineID] = map[string]bool{}
			}
			ranBy[l.MachineID][repo] = true
			env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: l.RunnerName, JobID: job, Repo: repo, Reason: "job completed"})
		}, time.Duration(i)*time.Minute+30*time.Second)
	}
	env.RegisterDelayedCallback(func() {
		inv := inventory(t, env)
		require.Len(t, inv.Machines, 2, "one machine per repository, reused")
		for _, pm := range inv.Machines {
			assert.Len(t, ranBy[pm.MachineID], 1, "machine %s ran one repository's jobs", pm.MachineID)
			assert.True(t, ranBy[pm.MachineID][pm.Repo], "the inventory names the machine's repository")
			assert.Equal(t, jobs/2, pm.Jobs)
			assert.False(t, pm.Mixed)
		}
	}, (jobs+1)*time.Minute)
	pool := testPool(0, 4)
	pool.Isolation = pools.IsolationPerRepo
	runPool(t, env, runnerapi.PoolInput{Pool: pool}, time.Hour)

	assert.Len(t, w.creates, 2)
	byAff := map[string]int64{}
	for _, e := range m.named(MetricRunnerLeases) {
		assert.Equal(t, "linux", e.tags["pool"])
		byAff[e.tags["affinity"]] += e.count
	}
	assert.Equal(t, map[string]int64{affinityFresh: 2, affinitySameRepo: jobs - 2}, byAff, "75% cache-affinity hits")
}

// Isolation fresh: each job gets a new machine, deleted after its job.
func TestPoolFreshDeletesTheMachineAfterItsJob(t *testing.T) {
	env, w := newPoolEnv(t)
	acq := newAcquires()
	var first runnerapi.Lease
	env.RegisterDelayedCallback(func() { acq.jobOf(env, 1, "acme/a") }, 0)
	env.RegisterDelayedCallback(func() {
		var ok bool
		first, ok = acq.lease(1)
		require.True(t, ok)
		env.SignalWorkflow(runnerapi.SignalRelease, runnerapi.ReleaseRequest{MachineID: first.MachineID, JobID: 1})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, []string{first.MachineID}, w.list(&w.deletes), "deleted after its one job")
		_, ok := machineByID(inventory(t, env), first.MachineID)
		assert.False(t, ok)
		acq.jobOf(env, 2, "acme/a")
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		l, ok := acq.lease(2)
		require.True(t, ok)
		assert.NotEqual(t, first.MachineID, l.MachineID, "the same repository's next job gets a new machine too")
		assert.True(t, l.Fresh)
	}, 3*time.Minute)
	pool := testPool(0, 2)
	pool.Isolation = pools.IsolationFresh
	runPool(t, env, runnerapi.PoolInput{Pool: pool}, time.Hour)
	assert.Len(t, w.creates, 2)
	assert.Empty(t, w.list(&w.sleeps), "a used machine is deleted, not put to sleep")
}

// GitHub may hand a runner started for repository a's job a queued job of
// repository b (same labels, same runner group): the completed job's
// release names b, and the machine, bound to a, is deleted rather than
// leased to a's next job.
func TestIsolationMachineThatRanAnotherRepositorysJobIsDeleted(t *testing.T) {
	for _, iso := range []string{pools.IsolationPerRepo, pools.IsolationShared} {
		t.Run(iso, func(t *testing.T) {
			m := leasedMachine("dm-a", 1, "")
			m.Repo, m.Jobs = "acme/a", 1
			p, _ := isoState(iso, 0, 2, m)
			p.release(runnerapi.ReleaseRequest{RunnerName: m.RunnerName, JobID: 2, Repo: "acme/b", Reason: "job completed"})
			ds := p.takeDecisions()
			if iso == pools.IsolationShared {
				assert.Empty(t, ds, "shared: the machine stays, as before")
				assert.Equal(t, runnerapi.MachineIdle, m.State)
				return
			}
			require.Equal(t, []decisionKind{decideDelete}, kinds(ds))
			assert.Contains(t, ds[0].why, "ran a job of another repository")
			assert.True(t, m.Mixed)
		})
	}
	// The same repository's completion frees it as usual.
	m := leasedMachine("dm-a", 1, "")
	m.Repo, m.Jobs = "acme/a", 1
	p, _ := isoState(pools.IsolationPerRepo, 0, 2, m)
	p.release(runnerapi.ReleaseRequest{RunnerName: m.RunnerName, JobID: 1, Repo: "acme/a"})
	assert.Empty(t, p.takeDecisions())
	assert.Equal(t, runnerapi.MachineIdle, m.State)
}

// Per-repo keeps a released machine only when it knows nothing else ran
// on it: the completion of a job of its repository, or a clean release
// (the runner never started, or was removed before it took a job). A
// withdrawal, an expired lease or a runner gone after some job (whose
// completion may never be reported: its RunnerJob terminated) deletes it.
func TestIsolationPerRepoDeletesAMachineWhoseRunIsUnknown(t *testing.T) {
	cases := []struct {
		name string
		r    func(m *poolMachine) runnerapi.ReleaseRequest
		kept bool
	}{
		{"completion of its repository's job", func(m *poolMachine) runnerapi.ReleaseRequest {
			return runnerapi.ReleaseRequest{RunnerName: m.RunnerName, JobID: 1, Repo: "acme/a"}
		}, true},
		{"clean release", func(m *poolMachine) runnerapi.ReleaseRequest {
			return runnerapi.ReleaseRequest{MachineID: m.MachineID, RunnerName: m.RunnerName, JobID: 1, Attempt: 1, Clean: true}
		}, true},
		{"own release, runner gone after some job", func(m *poolMachine) runnerapi.ReleaseRequest {
			return runnerapi.ReleaseRequest{MachineID: m.MachineID, RunnerName: m.RunnerName, JobID: 1, Attempt: 1}
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := leasedMachine("dm-a", 1, "")
			m.Repo, m.Jobs = "acme/a", 1
			p, _ := isoState(pools.IsolationPerRepo, 0, 2, m)
			p.release(c.r(m))
			if c.kept {
				assert.Empty(t, p.takeDecisions())
				assert.Equal(t, runnerapi.MachineIdle, m.State)
				return
			}
			ds := p.takeDecisions()
			require.Equal(t, []decisionKind{decideDelete}, kinds(ds))
			assert.Contains(t, ds[0].why, "what ran on it is unknown")
		})
	}
	t.Run("withdrawal", func(t *testing.T) {
		m := leasedMachine("dm-a", 1, "")
		m.Repo, m.Jobs = "acme/a", 1
		p, _ := isoState(pools.IsolationPerRepo, 0, 2, m)
		p.withdraw(runnerapi.WithdrawRequest{JobID: 1, Reason: "job workflow no longer running"})
		assert.Equal(t, []decisionKind{decideDelete}, kinds(p.takeDecisions()))
	})
	t.Run("shared keeps it", func(t *testing.T) {
		m := leasedMachine("dm-a", 1, "")
		m.Repo, m.Jobs = "acme/a", 1
		p, _ := isoState(pools.IsolationShared, 0, 2, m)
		p.withdraw(runnerapi.WithdrawRequest{JobID: 1})
		assert.Empty(t, p.takeDecisions())
	})
}
