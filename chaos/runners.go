package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
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
