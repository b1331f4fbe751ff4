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
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
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
	// any inventory yet. A machine's age counts to the start of the run's
	// reads of the owners, so one made while they were read is young.
	Grace time.Duration
	// QueryTimeout bounds each query and describe of one workflow (default
	// 15s): a workflow that cannot answer makes ownership unknown, it does
	// not stall the run.
	QueryTimeout time.Duration
	Logger       *slog.Logger
}

// ReconcileResult says what a reconciliation did.
type ReconcileResult struct {
	Machines int // machines listed
	Owned    int // owned by a pool, a preview, a runner job or a provisioning
	Young    int // unowned but within the grace period
	// Kept counts unowned machines past the grace period that were not
	// deleted because some owner could not be read this run (see Errors):
	// a machine is only deleted when every owner answered.
	Kept int `json:",omitempty"`
	// Left counts the unowned machines past the grace period still there
	// after the run: the kept ones and those whose delete failed. The
	// worker exports it as drydock_unowned_machines (an alert fires when
	// it stays above zero: a machine nothing owns costs for nothing).
	Left            int      `json:",omitempty"`
	DeletedMachines []string `json:",omitempty"`
	RemovedRunners  []string `json:",omitempty"`
	Errors          []string `json:",omitempty"`
}

// Reconcile deletes Dedalus machines that nothing running owns (no pool
// inventory, open preview, running RunnerJob or RunnerProvision) and that
// are older than the grace period, and removes offline Drydock runners that
// nothing backs. An owner that cannot be read does not abort the run: it is
// reported in Errors, no machine is deleted that run (Kept counts the ones
// spared), and the runners it may lease are kept; the rest still happens.
func (r *Reconciler) Reconcile(ctx context.Context) (ReconcileResult, error) {
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	var res ReconcileResult
	own := r.owners(ctx)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Errors = append(res.Errors, own.unknown...)
	awake, listed, err := r.sweep(ctx, own, &res, log)
	if err != nil {
		return res, err
	}
	switch {
	case r.Runners == nil || r.Pools == nil:
	case own.runnersUnknown:
		res.Errors = append(res.Errors, "runners not reconciled: the runners some owner leases are unknown")
	default:
		r.removeStaleRunners(ctx, own, &res, log)
	}
	slices.Sort(res.DeletedMachines)
	awake.report(ctx, res, listed)
	log.Info("reconciled", "machines", res.Machines, "owned", res.Owned, "young", res.Young, "kept", res.Kept,
		"deleted", len(res.DeletedMachines), "runners_removed", len(res.RemovedRunners), "errors", len(res.Errors))
	return res, nil
}

func heartbeat(ctx context.Context, details ...any) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, details...)
	}
}

// list calls fn for every running workflow of a type, page by page.
func (r *Reconciler) list(ctx context.Context, workflowType string, fn func(*workflowpb.WorkflowExecutionInfo)) error {
	q := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", workflowType)
	var token []byte
	for {
		resp, err := r.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return err
		}
		heartbeat(ctx, "listing "+workflowType)
		for _, e := range resp.GetExecutions() {
			fn(e)
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return nil
		}
	}
}

// query asks a workflow's current run, if it is open, and decodes the answer
// into v. A workflow that does not exist or is closed is not open, and owns
// nothing.
func (r *Reconciler) query(ctx context.Context, workflowID, queryType string, v any) (open bool, err error) {
	heartbeat(ctx, "query "+workflowID)
	qctx, cancel := context.WithTimeout(ctx, r.queryTimeout())
	defer cancel()
	resp, err := r.Temporal.QueryWorkflowWithOptions(qctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID: workflowID, QueryType: queryType, QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if resp.QueryRejected != nil || resp.QueryResult == nil {
		return false, nil
	}
	return true, resp.QueryResult.Get(v)
}

func (r *Reconciler) queryTimeout() time.Duration {
	if r.QueryTimeout > 0 {
		return r.QueryTimeout
	}
	return 15 * time.Second
}

func (r *Reconciler) removeStaleRunners(ctx context.Context, own *ownership, res *ReconcileResult, log *slog.Logger) {
	seen := map[pools.Scope]bool{}
	for _, scope := range runnerScopes(r.Pools.Pools) {
		if seen[scope] {
			continue
		}
		seen[scope] = true
		runners, err := r.Runners.ListRunners(ctx, scope)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("list runners of %s: %v", scopeName(scope), err))
			continue
		}
		for _, rn := range runners {
			if !strings.HasPrefix(rn.Name, runnerapi.RunnerPrefix) || rn.Online || rn.Busy || own.leased(rn.Name) {
				continue
			}
			heartbeat(ctx, "remove runner "+rn.Name)
			if err := r.Runners.RemoveRunner(ctx, scope, rn.ID); err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("remove runner %s: %v", rn.Name, err))
				continue
			}
			log.Info("reconciler removed an offline runner no machine backs", "runner", rn.Name)
			res.RemovedRunners = append(res.RemovedRunners, rn.Name)
		}
	}
}

// runnerScopes lists where the pools' runners register: each pool's scope,
// and the repositories a per-repo or fresh organization pool lists by name
// (pools.Pool.RunnerScope). Runners of repositories a pool reaches through
// "*" or its owners are not listed: RemoveRunner at the end of each job
// removes them, and GitHub removes a just-in-time runner that never
// connected within a day by itself.
func runnerScopes(ps []pools.Pool) []pools.Scope {
	var out []pools.Scope
	for _, p := range ps {
		out = append(out, p.Scope)
		for _, repo := range p.Repositories {
			if s := p.RunnerScope(repo); s != p.Scope {
				out = append(out, s)
			}
		}
	}
	return out
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

// intAttr is an Int search attribute's value (0 when absent).
func intAttr(sa *commonpb.SearchAttributes, name string) int64 {
	p := sa.GetIndexedFields()[name]
	if p == nil {
		return 0
	}
	var v int64
	if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
		return 0
	}
	return v
}
