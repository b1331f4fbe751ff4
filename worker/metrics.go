package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// snapshotTTL is how long a reading of Temporal serves scrapes.
const snapshotTTL = 15 * time.Second

var previewPhases = []workflows.PreviewPhase{
	workflows.PreviewPending, workflows.PreviewProvisioning, workflows.PreviewDeploying, workflows.PreviewReady,
	workflows.PreviewFailed, workflows.PreviewTearingDown, workflows.PreviewDestroyed,
}

var machineStates = []runnerapi.MachineState{
	runnerapi.MachineProvisioning, runnerapi.MachineIdle, runnerapi.MachineWaking,
	runnerapi.MachineBusy, runnerapi.MachineBroken, runnerapi.MachineDraining,
}

// registerStateMetrics adds the gauges read from Temporal at scrape time:
// open previews by phase (visibility counts) and each pool's machines by
// state (the pool workflow's inventory query). Every worker replica reports
// the same figures.
func registerStateMetrics(reg *metrics.Registry, tc client.Client, pc *pools.Config, log *slog.Logger) {
	metrics.NewSnapshot(reg, "previews",
		"Open preview workflows by phase, from Temporal visibility (every worker reports the same: aggregate with max).",
		[]string{"phase"}, snapshotTTL, log, func(ctx context.Context) ([]metrics.Sample, error) {
			var out []metrics.Sample
			for _, ph := range previewPhases {
				q := fmt.Sprintf("WorkflowType = %q AND ExecutionStatus = 'Running' AND %s = %q",
					workflows.PreviewLifecycleName, workflows.SearchAttrPhase.GetName(), string(ph))
				n, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
				if err != nil {
					return nil, fmt.Errorf("count %s previews: %w", ph, err)
				}
				out = append(out, metrics.Sample{Labels: []string{string(ph)}, Value: float64(n.GetCount())})
			}
			return out, nil
		})
	metrics.NewSnapshot(reg, "preview_slots",
		"Preview slots held and previews queued for one, from the PreviewSlots coordinator (PREVIEW_MAX_OPEN*; 0 when it is not running; every worker reports the same: aggregate with max).",
		[]string{"state"}, snapshotTTL, log, func(ctx context.Context) ([]metrics.Sample, error) {
			st, err := previewSlots(ctx, tc)
			if err != nil {
				return nil, err
			}
			return []metrics.Sample{
				{Labels: []string{"held"}, Value: float64(len(st.Holders))},
				{Labels: []string{"queued"}, Value: float64(len(st.Queue))},
			}, nil
		})
	if len(pc.Pools) == 0 {
		return
	}
	metrics.NewSnapshot(reg, "pool_machines",
		"Runner pool machines by state, from each pool's inventory (every worker reports the same: aggregate with max).",
		[]string{"pool", "state"}, snapshotTTL, log, func(ctx context.Context) ([]metrics.Sample, error) {
			var out []metrics.Sample
			for _, name := range pc.Names() {
				inv, ok, err := poolInventory(ctx, tc, name)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue // the pool has not been started yet
				}
				for _, st := range machineStates {
					out = append(out, metrics.Sample{Labels: []string{name, string(st)}, Value: float64(inv.Counts[st])})
				}
			}
			return out, nil
		})
}

// poolInventory queries one pool's inventory; ok is false when the pool's
// workflow has not been started yet.
func poolInventory(ctx context.Context, tc client.Client, name string) (runnerapi.Inventory, bool, error) {
	v, err := tc.QueryWorkflow(ctx, runnerapi.PoolWorkflowID(name), "", runnerapi.QueryInventory)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return runnerapi.Inventory{}, false, nil
	}
	if err != nil {
		return runnerapi.Inventory{}, false, fmt.Errorf("inventory of pool %s: %w", name, err)
	}
	var inv runnerapi.Inventory
	if err := v.Get(&inv); err != nil {
		return runnerapi.Inventory{}, false, fmt.Errorf("inventory of pool %s: %w", name, err)
	}
	return inv, true, nil
}

// previewSlots asks the PreviewSlots coordinator for its state; a
// coordinator that is not running counts nothing.
func previewSlots(ctx context.Context, tc client.Client) (slotsapi.State, error) {
	v, err := tc.QueryWorkflow(ctx, slotsapi.WorkflowID, "", slotsapi.QueryState)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return slotsapi.State{}, nil
	}
	if err != nil {
		return slotsapi.State{}, fmt.Errorf("preview slots: %w", err)
	}
	var st slotsapi.State
	if err := v.Get(&st); err != nil {
		return slotsapi.State{}, fmt.Errorf("preview slots: %w", err)
	}
	return st, nil
}
