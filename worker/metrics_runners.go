package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// waitingJobPhases are the RunnerJob phases of a job GitHub still shows
// queued: no runner of the pool has picked it up yet.
var waitingJobPhases = []runnerapi.RunnerJobPhase{
	runnerapi.JobAcquiring, runnerapi.JobWaking, runnerapi.JobStarting, runnerapi.JobWaiting,
}

// registerRunnerMetrics adds the runner-pool gauge the alerts need beyond
// drydock_pool_machines: how long the oldest job not picked up yet has
// waited. (Machines running unused are measured by the reconciler, from
// what Dedalus reports: drydock_awake_unused_seconds.)
func registerRunnerMetrics(reg *metrics.Registry, tc client.Client, pc *pools.Config, log *slog.Logger) {
	if len(pc.Pools) == 0 {
		return
	}
	metrics.NewSnapshot(reg, "runner_job_oldest_wait_seconds",
		"Age of the oldest running RunnerJob whose job no runner has picked up yet (0: none waiting), by pool, from Temporal visibility (every worker reports the same: aggregate with max).",
		[]string{"pool"}, snapshotTTL, log, func(ctx context.Context) ([]metrics.Sample, error) {
			starts, err := waitingJobStarts(ctx, tc)
			if err != nil {
				return nil, err
			}
			return oldestWaits(pc.Names(), starts, time.Now()), nil
		})
}

// jobStart is one waiting RunnerJob: its pool and when its workflow started
// (the queued delivery).
type jobStart struct {
	pool  string
	start time.Time
}

// waitingJobStarts lists the running RunnerJobs in a waiting phase. There
// are few (a pool's queue), and the read is bounded by the Snapshot's
// timeout; visibility lists cannot be ordered on every store, so all pages
// are read.
func waitingJobStarts(ctx context.Context, tc client.Client) ([]jobStart, error) {
	phases := ""
	for i, ph := range waitingJobPhases {
		if i > 0 {
			phases += ", "
		}
		phases += fmt.Sprintf("%q", string(ph))
	}
	q := fmt.Sprintf("WorkflowType = %q AND ExecutionStatus = 'Running' AND %s IN (%s)",
		runnerapi.RunnerJobName, workflows.SearchAttrPhase.GetName(), phases)
	var out []jobStart
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: 1000, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list waiting runner jobs: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			pool := keyword(e.GetSearchAttributes().GetIndexedFields()[workflows.SearchAttrPool.GetName()])
			out = append(out, jobStart{pool: pool, start: e.GetStartTime().AsTime()})
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

// keyword decodes a Keyword search attribute's payload ("" when absent).
func keyword(p *commonpb.Payload) string {
	var s string
	if p == nil || converter.GetDefaultDataConverter().FromPayload(p, &s) != nil {
		return ""
	}
	return s
}

// oldestWaits is, for every configured pool, the age of its oldest waiting
// job at now (0 when none waits). Jobs of pools not configured here are
// left out: another worker's configuration reports them.
func oldestWaits(names []string, starts []jobStart, now time.Time) []metrics.Sample {
	oldest := map[string]time.Duration{}
	for _, s := range starts {
		if age := now.Sub(s.start); age > oldest[s.pool] {
			oldest[s.pool] = age
		}
	}
	out := make([]metrics.Sample, 0, len(names))
	for _, name := range names {
		out = append(out, metrics.Sample{Labels: []string{name}, Value: oldest[name].Seconds()})
	}
	return out
}
