package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/githubtest"
	"github.com/drydock-dev/drydock/internal/harness"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// The runner pools of a chaos run, besides the worker kills, the Dedalus
// faults and the Temporal restart that hit everything:
//   - pool "chaos" (JIT runners): some jobs are cancelled on GitHub while
//     they wait for a machine or for pickup (held back from every runner
//     until then); some RunnerJob workflows are terminated mid-lease; the
//     pool workflow itself is terminated once; GitHub answers 502s and
//     secondary rate limits while runners are registered; its
//     RUNNER_POOLS entry changes mid-run (bigger machines, another setup
//     step) and the worker restarts with it;
//     it takes the jobs of two repositories (app and lib) with isolation
//     per-repo: no machine runs a job after one of another repository;
//   - pool "chaos-p" (persistent runners): GitHub hands each job to
//     whichever awake runner asks first, so jobs run on other jobs'
//     machines.
const (
	persistentPool = "chaos-p"
	// How long a runner must have been busy before a sleep or delete of its
	// machine counts as a violation: a runner may take a job in the instant
	// between the pool's decision and its call.
	busyGrace = 2 * time.Second
)

var persistentLabels = []string{"self-hosted", "linux", "chaos-persistent"}

// Fates of a runner job.
const (
	fateRun          = "run"
	fateCancelQueued = "cancelled while queued"
	fateCancelPickup = "cancelled while waiting for pickup"
	fateTerminated   = "RunnerJob terminated mid-lease"
)

// job is one GitHub Actions job of the run and what happens to it.
type job struct {
	id     int64
	pool   string
	repo   string
	labels []string
	fate   string
}

// runnerChaos is the state the runner scenarios share with the run.
type runnerChaos struct {
	mu sync.Mutex
	// busyViolations: a sleep or delete of a machine whose runner was busy.
	busyViolations  []string
	sleepsDeletes   int
	reconfiguredAt  time.Time
	poolTerminated  bool
	githubFaults    int
	terminatedJobs  int
	cancelledQueued int
	cancelledPickup int
	// runs: the jobs GitHub handed to a runner, with the machine the
	// runner ran on, in the order they started (isolation invariant).
	runs []jobRun
}

// jobRun is one job GitHub handed to a runner on a machine.
type jobRun struct {
	job     int64
	repo    string
	machine string
	runner  string
}

// scriptJobs adds the jobs to GitHub and decides their fates.
func (c *chaos) scriptJobs() {
	base := time.Now().Unix() % 1_000_000 * 1000
	c.h.GH.OnJobEvent(c.recordRun)
	add := func(pool string, labels []string, fate, repo string) {
		id := base + int64(len(c.jobs)) + 1
		d := time.Duration(200+c.intn(800)) * time.Millisecond
		if fate == fateTerminated {
			// Long enough to be seen holding its lease: a job of a second
			// or less, picked up at once, could finish between two looks
			// (seen: the scenario waited for the lease until the end).
			d = 15 * time.Second
		}
		c.h.GH.AddJob(owner, repo, githubtest.Job{ID: id, Labels: labels, Duration: d})
		if fate == fateCancelQueued || fate == fateCancelPickup {
			c.h.GH.SetHeld(id, true) // no runner takes it before it is cancelled
		}
		c.jobs = append(c.jobs, &job{id: id, pool: pool, repo: repo, labels: labels, fate: fate})
	}
	cancels, terminations := 0, 0
	for i := range c.o.jobs {
		fate := fateRun
		switch {
		case i%7 == 3 && cancels < c.o.cancels:
			fate = []string{fateCancelQueued, fateCancelPickup}[cancels%2]
			cancels++
		case i%7 == 5 && terminations < c.o.terminateJobs:
			fate = fateTerminated
			terminations++
		}
		add(pool, jobLabels, fate, []string{repoName, repoName2}[i%2])
	}
	for range c.o.persistentJobs {
		add(persistentPool, persistentLabels, fateRun, repoName)
	}
}

// poolsAt is RUNNER_POOLS at a version: version 2 has bigger machines and
// another setup step. Each setup step appends "<machine> v<version>" to
// setup.log in the scratch directory, so the end can check that every
// machine's size and setup came from one configuration.
func (c *chaos) poolsAt(h *harness.Harness, version int) (string, error) {
	setup := fmt.Sprintf(`echo "$DEDALUS_MACHINE_ID v%d" >> %s`, version, filepath.Join(c.dir, "setup.log"))
	return h.FakeRunnerPools(harness.FakeRunnerPool{
		Name: pool, Org: owner, Repo: repoName, Labels: jobLabels, Isolation: pools.IsolationPerRepo,
		Repositories: []string{owner + "/" + repoName, owner + "/" + repoName2},
		VCPU:         sizeAt(version), MemoryMiB: 1024, StorageGiB: 4, Autosleep: "10m",
		MaxMachines: c.o.maxMachines, PickupTimeout: "30s", Retries: 9, Setup: setup, LeaseCheckEvery: leaseCheckEvery.String(),
	}, harness.FakeRunnerPool{
		Name: persistentPool, Org: owner, Repo: repoName, Labels: persistentLabels,
		VCPU: 1, MemoryMiB: 512, StorageGiB: 2, Autosleep: "10m",
		MaxMachines: 3, PickupTimeout: "30s", Retries: 9, Persistent: true, LeaseCheckEvery: leaseCheckEvery.String(),
	})
}

// sizeAt is the "chaos" pool's vCPU count at a configuration version.
func sizeAt(version int) float64 { return float64(1 + version) }

// observe is the emulator's Observe hook: a sleep or a delete of a machine
// whose runner has been busy for a while is a violation (the pool slept or
// deleted a machine under a running job).
func (c *chaos) observe(op, machineID string, at time.Time) {
	if (op != "sleepMachine" && op != "deleteMachine") || machineID == "" || c.h == nil {
		return
	}
	c.rc.mu.Lock()
	c.rc.sleepsDeletes++
	c.rc.mu.Unlock()
	for _, r := range c.h.GH.AllRunners() {
		if !r.Busy || r.MachineID != machineID {
			continue
		}
		j, ok := c.h.GH.Job(r.JobID)
		if !ok || j.Status != githubtest.JobInProgress || at.Sub(j.StartedAt) < busyGrace {
			continue
		}
		c.rc.mu.Lock()
		c.rc.busyViolations = append(c.rc.busyViolations, fmt.Sprintf("%s of %s while runner %s ran job %d (for %s)",
			op, machineID, r.Name, r.JobID, at.Sub(j.StartedAt).Round(time.Millisecond)))
		c.rc.mu.Unlock()
	}
}

// githubFaults makes GitHub answer runner registrations with 502s and
// secondary rate limits until ctx ends: one fault at a time, the next only
// once the last was answered and a while has passed, so GitHub is flaky
// but never down for long.
func (c *chaos) githubFaults(ctx context.Context) {
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.jitter(3 * time.Second)):
		}
		if c.h.GH.FaultsPending(githubtest.RouteGenerateOrgJITConfig) > 0 {
			continue
		}
		f := githubtest.BadGateway()
		if i%2 == 1 {
			f = githubtest.SecondaryRateLimit(time.Second)
		}
		c.h.GH.FailNext(githubtest.RouteGenerateOrgJITConfig, 1, f)
		c.rc.mu.Lock()
		c.rc.githubFaults++
		c.rc.mu.Unlock()
	}
}

// cancelJobs cancels the jobs fated so on GitHub, as a user or a
// concurrency group with cancel-in-progress does, and delivers the
// completed event GitHub sends (no runner, conclusion cancelled): the ones
// "while queued" at once, the ones "while waiting for pickup" once their
// RunnerJob started a runner for them.
func (c *chaos) cancelJobs(ctx context.Context, deadline time.Time) {
	var wg sync.WaitGroup
	for _, j := range c.jobs {
		if j.fate != fateCancelQueued && j.fate != fateCancelPickup {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if j.fate == fateCancelPickup {
				c.waitJobPhase(ctx, j, deadline, runnerapi.JobWaiting)
			}
			c.h.GH.CancelJob(j.id)
			body, err := c.h.WorkflowJob("completed", ghfixture.Job{ID: j.id, RunID: j.id * 10, Name: fmt.Sprintf("build-%d", j.id),
				Owner: owner, Repo: j.repo, Org: owner, Labels: j.labels, Conclusion: "cancelled"})
			if err != nil {
				c.fail("workflow_job fixture: %v", err)
				return
			}
			c.deliver(ctx, "workflow_job", fmt.Sprintf("cancelled-%d", j.id), body, 3)
			c.rc.mu.Lock()
			if j.fate == fateCancelQueued {
				c.rc.cancelledQueued++
			} else {
				c.rc.cancelledPickup++
			}
			c.rc.mu.Unlock()
		}()
	}
	wg.Wait()
}

// terminateJobs terminates the RunnerJob workflows fated so once they hold
// a lease (their runner started, or running the job).
func (c *chaos) terminateJobs(ctx context.Context, deadline time.Time) {
	for _, j := range c.jobs {
		if j.fate != fateTerminated {
			continue
		}
		c.waitJobPhase(ctx, j, deadline, runnerapi.JobWaiting, runnerapi.JobRunning)
		err := c.h.TC.TerminateWorkflow(ctx, runnerapi.JobWorkflowID(j.id), "", "chaos: RunnerJob terminated mid-lease")
		if err != nil {
			c.fail("terminate RunnerJob of job %d: %v", j.id, err)
			continue
		}
		c.rc.mu.Lock()
		c.rc.terminatedJobs++
		c.rc.mu.Unlock()
	}
}

// waitJobPhase waits until j's RunnerJob reports one of phases (or the
// deadline passes: the scenario then acts anyway).
func (c *chaos) waitJobPhase(ctx context.Context, j *job, deadline time.Time, phases ...runnerapi.RunnerJobPhase) {
	_ = poll(ctx, deadline, func() error {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		v, err := c.h.TC.QueryWorkflow(qctx, runnerapi.JobWorkflowID(j.id), "", runnerapi.QueryJobStatus)
		if err != nil {
			return errNotYet
		}
		var st runnerapi.RunnerJobStatus
		if v.Get(&st) != nil || !slices.Contains(phases, st.Phase) {
			return errNotYet
		}
		return nil
	})
}

// reconfigure changes the "chaos" pool's RUNNER_POOLS entry (bigger
// machines, another setup step) and restarts the worker with it, as an
// operator rolling out a new configuration does.
func (c *chaos) reconfigure() error {
	cfg, err := c.poolsAt(c.h, 2)
	if err != nil {
		return err
	}
	c.workerMu.Lock()
	defer c.workerMu.Unlock()
	// Every replica gets the new configuration, as a rolling update would.
	for _, w := range c.h.Workers {
		for i, kv := range w.Env {
			if strings.HasPrefix(kv, "RUNNER_POOLS=") {
				w.Env[i] = "RUNNER_POOLS=" + cfg
			}
		}
	}
	c.rc.mu.Lock()
	c.rc.reconfiguredAt = time.Now()
	c.rc.mu.Unlock()
	for _, w := range c.h.Workers {
		w.Kill()
		if err := w.Start(); err != nil {
			return err
		}
	}
	return nil
}

// terminatePool terminates the "chaos" pool's entity workflow, as an
// operator might by mistake: the next acquire starts it again, and the
// machines the terminated run had are the reconciler's to clean up.
func (c *chaos) terminatePool(ctx context.Context) error {
	err := c.h.TC.TerminateWorkflow(ctx, runnerapi.PoolWorkflowID(pool), "", "chaos: pool workflow terminated")
	if err == nil {
		c.rc.mu.Lock()
		c.rc.poolTerminated = true
		c.rc.mu.Unlock()
	}
	return err
}

// leaseCheckEvery is the pools' lease liveness interval in a chaos run
// (RUNNER_POOLS lease_check_every).
const leaseCheckEvery = 10 * time.Second

// checkLeases: every lease and queue place a pool holds belongs to a
// RunnerJob that is still running. One held for a RunnerJob that ended on
// its own is a leak at once; one held for a RunnerJob terminated on
// purpose (it could not give it back) must be expired by the pool's
// liveness check within a few of its intervals.
func (c *chaos) checkLeases(ctx context.Context) {
	var leaked, waiting []string
	held := 0
	err := poll(ctx, time.Now().Add(3*leaseCheckEvery+30*time.Second), func() error {
		leaked, waiting, held = nil, nil, 0
		for _, name := range []string{pool, persistentPool} {
			inv, err := c.inventory(ctx, name)
			if err != nil {
				return fmt.Errorf("inventory of pool %s: %w", name, err)
			}
			// Leases, jobs persistent runners are running, queue places.
			var jobs []int64
			for _, m := range inv.Machines {
				for _, id := range []int64{m.JobID, m.RunningJob} {
					if id != 0 {
						jobs = append(jobs, id)
					}
				}
			}
			for _, id := range append(jobs, inv.Queue...) {
				held++
				desc, err := c.h.TC.DescribeWorkflowExecution(ctx, runnerapi.JobWorkflowID(id), "")
				if err != nil {
					return fmt.Errorf("RunnerJob of job %d: %w", id, err)
				}
				switch st := desc.GetWorkflowExecutionInfo().GetStatus(); st {
				case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
				case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
					waiting = append(waiting, fmt.Sprintf("pool %s, job %d", name, id))
				default:
					leaked = append(leaked, fmt.Sprintf("pool %s holds a lease or queue place of job %d, whose RunnerJob ended %s", name, id, st))
				}
			}
		}
		switch {
		case len(leaked) > 0:
			return errors.New("leaked")
		case len(waiting) > 0:
			return errNotYet
		}
		return nil
	})
	for _, l := range leaked {
		c.fail("%s", l)
	}
	if len(leaked) == 0 && err != nil {
		c.fail("leases of terminated RunnerJobs not expired by the liveness check (every %s): %v %s", leaseCheckEvery, err, strings.Join(waiting, "; "))
	}
	c.count("leases/places held by RunnerJobs that ended / by terminated ones after the liveness check", fmt.Sprintf("%d / %d (of %d held)", len(leaked), len(waiting), held))
}

func (c *chaos) inventory(ctx context.Context, name string) (runnerapi.Inventory, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := c.h.TC.QueryWorkflow(qctx, runnerapi.PoolWorkflowID(name), "", runnerapi.QueryInventory)
	if err != nil {
		return runnerapi.Inventory{}, err
	}
	var inv runnerapi.Inventory
	return inv, v.Get(&inv)
}

// reconcile runs the reconciler once and waits for it: after the pool was
// terminated, the machines its run had are nobody's.
func (c *chaos) reconcile(ctx context.Context) {
	run, err := c.h.TC.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "chaos-reconcile", TaskQueue: workflows.TaskQueue}, workflows.ReconcileName)
	if err != nil {
		c.fail("start the reconciler: %v", err)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, c.o.timeout)
	defer cancel()
	var res activities.ReconcileResult
	if err := run.Get(wctx, &res); err != nil {
		c.fail("reconciler: %v", err)
		return
	}
	c.count("machines the reconciler deleted (nobody's after the pool was terminated)", len(res.DeletedMachines))
	if len(res.Errors) > 0 {
		c.fail("reconciler errors: %s", strings.Join(res.Errors, "; "))
	}
}

// checkRunnerInvariants: no machine slept or deleted under a busy runner;
// no machine deleted as broken (nothing here breaks one: Dedalus faults
// are retried and GitHub errors are GitHub's); every machine's size and
// setup came from the same configuration.
func (c *chaos) checkRunnerInvariants(ctx context.Context) {
	c.rc.mu.Lock()
	violations, calls := slices.Clone(c.rc.busyViolations), c.rc.sleepsDeletes
	c.rc.mu.Unlock()
	c.count("machine sleeps/deletes while its runner was busy (of all sleeps/deletes)", fmt.Sprintf("%d (of %d)", len(violations), calls))
	for _, v := range violations {
		c.fail("%s", v)
	}

	broken, err := c.brokenDeletes(ctx)
	if err != nil {
		c.fail("read pool histories: %v", err)
	}
	c.count("runner machines deleted as broken", len(broken))
	for _, b := range broken {
		c.fail("a healthy machine was deleted as broken: %s", b)
	}

	c.checkSizes()
	c.checkIsolation()
}

// recordRun is the GitHub double's job hook: a job handed to a runner
// (in_progress) is recorded with the machine the runner said it runs on.
func (c *chaos) recordRun(action string, j githubtest.Job) {
	if action != "in_progress" || j.RunnerName == "" {
		return
	}
	// Wherever it registered: at the organization (shared and persistent
	// pools) or at the job's repository (per-repo pools).
	machine := ""
	if r, ok := c.h.GH.RunnerByID(j.RunnerID); ok {
		machine = r.MachineID
	}
	c.rc.mu.Lock()
	defer c.rc.mu.Unlock()
	c.rc.runs = append(c.rc.runs, jobRun{job: j.ID, repo: strings.ToLower(j.Owner + "/" + j.Repo), machine: machine, runner: j.RunnerName})
}

// checkIsolation: on the per-repo pool "chaos", no machine ever ran jobs
// of two repositories. Its runners register at their job's repository
// (pools.Pool.RunnerScope), so GitHub hands them no other repository's job.
func (c *chaos) checkIsolation() {
	c.rc.mu.Lock()
	runs := slices.Clone(c.rc.runs)
	c.rc.mu.Unlock()
	inPool := map[int64]bool{}
	for _, j := range c.jobs {
		inPool[j.id] = j.pool == pool
	}
	byMachine := map[string][]jobRun{}
	var order []string
	unknown := 0
	for _, r := range runs {
		if !inPool[r.job] {
			continue
		}
		if r.machine == "" {
			unknown++
			continue
		}
		if byMachine[r.machine] == nil {
			order = append(order, r.machine)
		}
		byMachine[r.machine] = append(byMachine[r.machine], r)
	}
	crossed, repos := 0, map[string]bool{}
	for _, m := range order {
		rs := byMachine[m]
		for i, r := range rs {
			repos[r.repo] = true
			if r.repo == rs[0].repo {
				continue
			}
			crossed++
			c.fail("isolation per-repo: machine %s ran job %d of %s after a job of %s (%d job(s) after it) (%v)", m, r.job, r.repo, rs[0].repo, len(rs)-1-i, rs)
		}
	}
	c.count("pool chaos (per-repo): machines that ran jobs / repositories", fmt.Sprintf("%d / %d", len(order), len(repos)))
	c.count("pool chaos: jobs that ran on a machine another repository used first", crossed)
	if len(repos) < 2 {
		c.fail("isolation: pool %s ran the jobs of %d repositories, want 2", pool, len(repos))
	}
	if unknown > 0 {
		c.fail("isolation: %d job(s) of pool %s ran on a runner whose machine is unknown", unknown, pool)
	}
}

// brokenDeletes lists the deletes the pools' histories made of machines
// marked broken (their activity summaries say why).
func (c *chaos) brokenDeletes(ctx context.Context) ([]string, error) {
	runs, err := c.executions(ctx, fmt.Sprintf("WorkflowType = '%s'", runnerapi.RunnerPoolName))
	if err != nil {
		return nil, err
	}
	dc := converter.GetDefaultDataConverter()
	var out []string
	for _, e := range runs {
		it := c.h.TC.GetWorkflowHistory(ctx, e.id, e.runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return out, err
			}
			a := ev.GetActivityTaskScheduledEventAttributes()
			if a == nil || a.GetActivityType().GetName() != "DeleteMachine" {
				continue
			}
			var summary string
			if p := ev.GetUserMetadata().GetSummary(); p != nil {
				_ = dc.FromPayload(p, &summary)
			}
			if strings.Contains(summary, "(broken") {
				out = append(out, summary)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// checkSizes: the "chaos" pool's machines ran one configuration's setup
// and have that configuration's size.
func (c *chaos) checkSizes() {
	b, err := os.ReadFile(filepath.Join(c.dir, "setup.log"))
	if err != nil {
		c.fail("setup log: %v", err)
		return
	}
	version := map[string]int{}
	for line := range strings.Lines(string(b)) {
		var id string
		var v int
		if _, err := fmt.Sscanf(line, "%s v%d", &id, &v); err == nil {
			version[id] = v
		}
	}
	byVersion := map[int]int{}
	for _, m := range c.h.Emu.Stats().Machines {
		v, ok := version[m.MachineID]
		if !ok {
			continue // a preview, or a persistent-pool machine
		}
		byVersion[v]++
		if m.VCPU != sizeAt(v) {
			c.fail("machine %s ran the setup of configuration v%d but has %g vCPU (v%d has %g)", m.MachineID, v, m.VCPU, v, sizeAt(v))
		}
	}
	c.count("chaos pool machines by configuration (v1 / v2), size matching setup", fmt.Sprintf("%d / %d", byVersion[1], byVersion[2]))
}

// report rows of the runner scenarios.
func (c *chaos) runnerCounts() [][2]string {
	c.rc.mu.Lock()
	defer c.rc.mu.Unlock()
	return [][2]string{
		{"jobs cancelled while queued / while waiting for pickup", fmt.Sprintf("%d / %d", c.rc.cancelledQueued, c.rc.cancelledPickup)},
		{"RunnerJobs terminated mid-lease", fmt.Sprint(c.rc.terminatedJobs)},
		{"pool workflow terminated", fmt.Sprint(c.rc.poolTerminated)},
		{"GitHub faults on runner registration (502, rate limit)", fmt.Sprint(c.rc.githubFaults)},
		{"RUNNER_POOLS changed mid-run (worker restarted)", fmt.Sprint(!c.rc.reconfiguredAt.IsZero())},
		{"persistent-pool jobs", fmt.Sprint(c.jobsIn(persistentPool))},
	}
}

// jobsIn counts the jobs of a pool.
func (c *chaos) jobsIn(name string) int {
	n := 0
	for _, j := range c.jobs {
		if j.pool == name {
			n++
		}
	}
	return n
}
