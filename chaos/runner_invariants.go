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
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// checkLeases: every lease and queue place a pool holds belongs to a
// RunnerJob that is still running. One held for a RunnerJob that ended on
// its own is a leak at once; one held for a RunnerJob terminated on
// purpose (it could not give it back) must be expired by the pool's
// liveness check within a few of its intervals.
func (c *chaos) checkLeases(ctx context.Context) {
	var lc leaseCheck
	err := poll(ctx, time.Now().Add(3*leaseCheckEvery+30*time.Second), func() error {
		lc = leaseCheck{}
		for _, name := range []string{pool, persistentPool} {
			if err := c.checkPoolLeases(ctx, name, &lc); err != nil {
				return err
			}
		}
		switch {
		case len(lc.leaked) > 0:
			return errors.New("leaked")
		case len(lc.waiting) > 0:
			return errNotYet
		}
		return nil
	})
	leaked, waiting, held := lc.leaked, lc.waiting, lc.held
	for _, l := range leaked {
		c.fail("%s", l)
	}
	if len(leaked) == 0 && err != nil {
		c.fail("leases of terminated RunnerJobs not expired by the liveness check (every %s): %v %s", leaseCheckEvery, err, strings.Join(waiting, "; "))
	}
	c.count("leases/places held by RunnerJobs that ended / by terminated ones after the liveness check", fmt.Sprintf("%d / %d (of %d held)", len(leaked), len(waiting), held))
}

// leaseCheck is what one look of checkLeases found: the leases and queue
// places held, those of RunnerJobs that ended on their own (leaked) and
// those of terminated ones (waiting for the liveness check).
type leaseCheck struct {
	leaked, waiting []string
	held            int
}

// checkPoolLeases adds to lc the leases and queue places pool name holds.
func (c *chaos) checkPoolLeases(ctx context.Context, name string, lc *leaseCheck) error {
	inv, err := c.inventory(ctx, name)
	if err != nil {
		return fmt.Errorf("inventory of pool %s: %w", name, err)
	}
	for _, id := range leaseHolders(inv) {
		lc.held++
		desc, err := c.h.TC.DescribeWorkflowExecution(ctx, runnerapi.JobWorkflowID(id), "")
		if err != nil {
			return fmt.Errorf("RunnerJob of job %d: %w", id, err)
		}
		switch st := desc.GetWorkflowExecutionInfo().GetStatus(); st {
		case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
			lc.waiting = append(lc.waiting, fmt.Sprintf("pool %s, job %d", name, id))
		default:
			lc.leaked = append(lc.leaked, fmt.Sprintf("pool %s holds a lease or queue place of job %d, whose RunnerJob ended %s", name, id, st))
		}
	}
	return nil
}

// leaseHolders are the jobs a pool's inventory holds something for:
// leases, jobs persistent runners are running, queue places.
func leaseHolders(inv runnerapi.Inventory) []int64 {
	var jobs []int64
	for _, m := range inv.Machines {
		for _, id := range []int64{m.JobID, m.RunningJob} {
			if id != 0 {
				jobs = append(jobs, id)
			}
		}
	}
	return append(jobs, inv.Queue...)
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
