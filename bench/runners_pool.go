package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// Shared by the runner-pool scenarios (dispatch, cost): a pool whose
// runners are the stand-in runner program (internal/testing/testenv/fakerunner),
// which claims its job from the GitHub double, reports it in progress,
// "runs" it for the job's duration and completes it, as e2e/runner_test.go
// does.

const (
	runnerOrg  = "bench-org"
	runnerRepo = "ci"
)

var runnerLabels = []string{"self-hosted", "linux"}

// benchPool is a runner pool's shape.
type benchPool struct {
	Name        string
	VCPU        float64
	MinIdle     int
	MaxMachines int
	Autosleep   string
	// PickupTimeout: how long a started runner may take to pick its job up.
	PickupTimeout string
}

// runnerPools returns harness.Options.Pools for one pool: it registers the
// organization and repository with the GitHub double and returns
// RUNNER_POOLS.
func runnerPools(p benchPool) func(h *harness.Harness) (string, error) {
	return func(h *harness.Harness) (string, error) {
		return h.FakeRunnerPools(harness.FakeRunnerPool{
			Name: p.Name, Org: runnerOrg, Repo: runnerRepo, Labels: runnerLabels,
			VCPU: p.VCPU, MemoryMiB: 2048, StorageGiB: 10, Autosleep: p.Autosleep,
			MinIdle: p.MinIdle, MaxMachines: p.MaxMachines, PickupTimeout: p.PickupTimeout,
		})
	}
}

// queueJob adds a job to the GitHub double and delivers its signed queued
// webhook; it returns the delivery's status code and how long the webhook
// server took to answer.
func queueJob(ctx context.Context, h *harness.Harness, id int64, d time.Duration) (int, time.Duration, error) {
	h.GH.AddJob(runnerOrg, runnerRepo, githubtest.Job{ID: id, RunID: id * 10, Name: fmt.Sprintf("build-%d", id), Labels: runnerLabels, Duration: d})
	body, err := h.WorkflowJob("queued", ghfixture.Job{
		ID: id, RunID: id * 10, Name: fmt.Sprintf("build-%d", id), Owner: runnerOrg, Repo: runnerRepo, Org: runnerOrg, Labels: runnerLabels,
	})
	if err != nil {
		return 0, 0, err
	}
	began := time.Now()
	code, err := h.Deliver(ctx, "workflow_job", fmt.Sprintf("queued-%d", id), body)
	took := time.Since(began)
	if err == nil && code != http.StatusAccepted {
		err = fmt.Errorf("queued delivery of job %d: HTTP %d", id, code)
	}
	return code, took, err
}

// inventory queries a RunnerPool's inventory.
func inventory(ctx context.Context, h *harness.Harness, pool string) (runnerapi.Inventory, error) {
	return queryWorkflow[runnerapi.Inventory](ctx, h, runnerapi.PoolWorkflowID(pool), runnerapi.QueryInventory)
}

// jobStatus queries a RunnerJob's status.
func jobStatus(ctx context.Context, h *harness.Harness, id int64) (runnerapi.RunnerJobStatus, error) {
	return queryWorkflow[runnerapi.RunnerJobStatus](ctx, h, runnerapi.JobWorkflowID(id), runnerapi.QueryJobStatus)
}

// queryWorkflow runs query on workflow wid (10 s at most) and decodes its
// answer.
func queryWorkflow[T any](ctx context.Context, h *harness.Harness, wid, query string) (T, error) {
	var v T
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	enc, err := h.TC.QueryWorkflow(qctx, wid, "", query)
	if err == nil {
		err = enc.Get(&v)
	}
	return v, err
}

// waitRunnerJobs waits until the RunnerJob workflows of ids have ended and
// returns how many of them completed their GitHub job.
func waitRunnerJobs(ctx context.Context, h *harness.Harness, ids []int64, timeout time.Duration) (int, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := 0
	for _, id := range ids {
		if err := h.TC.GetWorkflow(wctx, runnerapi.JobWorkflowID(id), "").Get(wctx, nil); err != nil {
			return done, fmt.Errorf("job %d: %w", id, err)
		}
		if j, ok := h.GH.Job(id); ok && j.Status == githubtest.JobCompleted {
			done++
		}
	}
	return done, nil
}

// waitPoolAsleep waits until the pool has at least n machines, all idle,
// and the emulator reports every one of them asleep.
func waitPoolAsleep(ctx context.Context, h *harness.Harness, pool string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var inv runnerapi.Inventory
	var err error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		inv, err = inventory(ctx, h, pool)
		if err == nil && len(inv.Machines) >= n && inv.Counts[runnerapi.MachineIdle] == len(inv.Machines) {
			asleep := 0
			for _, m := range inv.Machines {
				if machinePhase(h, m.MachineID) == "sleeping" {
					asleep++
				}
			}
			if asleep == len(inv.Machines) {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("pool %s: %w", pool, err)
	}
	return fmt.Errorf("pool %s: not %d machines, all idle and asleep, within %s (counts %v)", pool, n, timeout, inv.Counts)
}
