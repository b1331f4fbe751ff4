package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// RunnerDirectory lists and removes the self-hosted runners registered in a
// pool's scope (GitHub); nil when GitHub is not configured.
type RunnerDirectory interface {
	ListRunners(ctx context.Context, scope pools.Scope) ([]RegisteredRunner, error)
	RemoveRunner(ctx context.Context, scope pools.Scope, id int64) error
}

// RegisteredRunner is a runner as GitHub lists it.
type RegisteredRunner struct {
	ID     int64
	Name   string
	Online bool
	Busy   bool
}

// Reconciler finds what Drydock created and nothing owns any more.
type Reconciler struct {
	Dedalus  *dedalus.Client
	Temporal client.Client
	Pools    *pools.Config
	Runners  RunnerDirectory
	// Grace protects young machines: a machine being provisioned is not in
	// any inventory yet.
	Grace  time.Duration
	Logger *slog.Logger
}

// ReconcileResult says what a reconciliation did.
type ReconcileResult struct {
	Machines        int      // machines listed
	Owned           int      // owned by a pool or a preview
	Young           int      // unowned but within the grace period
	DeletedMachines []string `json:",omitempty"`
	RemovedRunners  []string `json:",omitempty"`
	Errors          []string `json:",omitempty"`
}

// The workflow type names the reconciler reads ownership from. They are the
// registered names of the preview workflow and its query.
const (
	previewWorkflowType = "PreviewLifecycle"
	previewStatusQuery  = "status"
	// The PreviewLifecycle search attributes (workflows.SearchAttrMachineID, SearchAttrPhase).
	previewMachineAttr = "DrydockMachineID"
	previewPhaseAttr   = "DrydockPhase"
)

// Reconcile deletes Dedalus machines that no pool inventory and no open
// preview owns and that are older than the grace period, and removes
// offline Drydock runners that no pool lease backs.
func (r *Reconciler) Reconcile(ctx context.Context) (ReconcileResult, error) {
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	var res ReconcileResult
	owned, leased, err := r.owners(ctx)
	if err != nil {
		return res, err
	}
	now := time.Now()
	for m, err := range r.Dedalus.AllMachines(ctx, 100) {
		if err != nil {
			return res, fmt.Errorf("list machines: %w", err)
		}
		activity.RecordHeartbeat(ctx, m.MachineID)
		if m.Status.Phase == dedalus.PhaseDestroyed || m.Status.Phase == dedalus.PhaseDestroying {
			continue
		}
		res.Machines++
		switch {
		case owned[m.MachineID]:
			res.Owned++
		case now.Sub(m.CreatedAt) < r.Grace:
			res.Young++
		default:
			_, err := r.Dedalus.DeleteMachine(ctx, m.MachineID, dedalus.Mutation{IdempotencyKey: "drydock:reconcile:delete:" + m.MachineID})
			if err != nil && !dedalus.IsNotFound(err) {
				res.Errors = append(res.Errors, fmt.Sprintf("delete %s: %v", m.MachineID, err))
				continue
			}
			log.Warn("reconciler deleted an unowned machine", "machine", m.MachineID, "created", m.CreatedAt)
			res.DeletedMachines = append(res.DeletedMachines, m.MachineID)
		}
	}
	if r.Runners != nil && r.Pools != nil {
		r.removeStaleRunners(ctx, leased, &res, log)
	}
	slices.Sort(res.DeletedMachines)
	log.Info("reconciled", "machines", res.Machines, "owned", res.Owned, "young", res.Young,
		"deleted", len(res.DeletedMachines), "runners_removed", len(res.RemovedRunners), "errors", len(res.Errors))
	return res, nil
}

// owners collects the machines pools and previews own, and the runner names
// pools have leased.
func (r *Reconciler) owners(ctx context.Context) (map[string]bool, map[string]bool, error) {
	owned, leased := map[string]bool{}, map[string]bool{}
	if r.Pools != nil {
		for _, p := range r.Pools.Pools {
			v, err := r.Temporal.QueryWorkflow(ctx, runnerapi.PoolWorkflowID(p.Name), "", runnerapi.QueryInventory)
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				continue // the pool never ran (or finished): it owns nothing
			}
			if err != nil {
				return nil, nil, fmt.Errorf("inventory of pool %s: %w", p.Name, err)
			}
			var inv runnerapi.Inventory
			if err := v.Get(&inv); err != nil {
				return nil, nil, err
			}
			for _, m := range inv.Machines {
				owned[m.MachineID] = true
				// A persistent runner is offline while its machine sleeps: it is backed.
				for _, name := range []string{m.RunnerName, m.PersistentRunner} {
					if name != "" {
						leased[name] = true
					}
				}
			}
		}
	}
	q := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", previewWorkflowType)
	var token []byte
	for {
		resp, err := r.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return nil, nil, fmt.Errorf("list previews: %w", err)
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, "listing previews")
		}
		for _, e := range resp.GetExecutions() {
			id := e.GetExecution().GetWorkflowId()
			// The machine is in the preview's search attributes: one list
			// call covers thousands of previews. Only a preview that shows
			// none although it is past pending is asked directly.
			if m := keywordAttr(e.GetSearchAttributes(), previewMachineAttr); m != "" {
				owned[m] = true
				continue
			}
			if keywordAttr(e.GetSearchAttributes(), previewPhaseAttr) == "pending" {
				continue
			}
			v, err := r.Temporal.QueryWorkflow(ctx, id, "", previewStatusQuery)
			if err != nil {
				// An open preview that cannot answer owns an unknown machine:
				// do not reconcile blind.
				return nil, nil, fmt.Errorf("status of %s: %w", id, err)
			}
			var st struct{ MachineID string }
			if err := v.Get(&st); err != nil {
				return nil, nil, err
			}
			if st.MachineID != "" {
				owned[st.MachineID] = true
			}
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return owned, leased, nil
		}
	}
}

func (r *Reconciler) removeStaleRunners(ctx context.Context, leased map[string]bool, res *ReconcileResult, log *slog.Logger) {
	seen := map[pools.Scope]bool{}
	for _, p := range r.Pools.Pools {
		if seen[p.Scope] {
			continue
		}
		seen[p.Scope] = true
		runners, err := r.Runners.ListRunners(ctx, p.Scope)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("list runners of %s: %v", scopeName(p.Scope), err))
			continue
		}
		for _, rn := range runners {
			if !strings.HasPrefix(rn.Name, runnerapi.RunnerPrefix) || rn.Online || rn.Busy || leased[rn.Name] {
				continue
			}
			if err := r.Runners.RemoveRunner(ctx, p.Scope, rn.ID); err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("remove runner %s: %v", rn.Name, err))
				continue
			}
			log.Info("reconciler removed an offline runner no machine backs", "runner", rn.Name)
			res.RemovedRunners = append(res.RemovedRunners, rn.Name)
		}
	}
}

func scopeName(s pools.Scope) string {
	if s.Kind == pools.ScopeRepo {
		return s.Repo
	}
	return s.Org
}

// keywordAttr is a Keyword search attribute's value ("" when absent).
func keywordAttr(sa *commonpb.SearchAttributes, name string) string {
	p := sa.GetIndexedFields()[name]
	if p == nil {
		return ""
	}
	var v string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
		return ""
	}
	return v
}
