package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
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
	// any inventory yet.
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

// The workflow type names, handlers and search attributes the reconciler
// reads ownership from (workflows.SearchAttr*, runnerapi).
const (
	previewWorkflowType = "PreviewLifecycle"
	previewStatusQuery  = "status"
	machineAttr         = "DrydockMachineID"
	phaseAttr           = "DrydockPhase"
	poolAttr            = "DrydockPool"
	jobIDAttr           = "DrydockJobID"
	// createMachineActivity heartbeats the new machine's ID as soon as
	// Dedalus answers (Machines.CreateMachine).
	createMachineActivity = "CreateMachine"
)

// ownership is what running workflows own, as far as this run could read it.
type ownership struct {
	machines map[string]bool        // machine IDs
	idle     map[string]idleMachine // pool machines no job leases, by ID
	runners  map[string]bool        // runner names leased by pools or jobs
	// protected are runner name prefixes never removed this run: every
	// runner a running job may have started (drydock-<pool>-<job>-), and
	// every runner of a pool whose owners could not all be read.
	protected []string
	// unknown lists the owners that could not be read: no machine is
	// deleted while one is unknown.
	unknown []string
	// runnersUnknown: some owner whose pool is unknown could not be read, so
	// no runner is removed either.
	runnersUnknown bool
	// pending are the open previews visibility shows as pending (no
	// machine yet, as far as it knows). Visibility trails the workflows:
	// before any machine is deleted they are asked (askPending).
	pending []string
	asked   bool
}

// fail records an owner that could not be read; pool is its pool when
// known (its runners are then kept), "" when any runner may be its.
func (o *ownership) fail(pool string, format string, args ...any) {
	o.unknown = append(o.unknown, fmt.Sprintf(format, args...))
	if pool == "" {
		o.runnersUnknown = true
		return
	}
	o.protected = append(o.protected, runnerapi.RunnerPrefix+pool+"-")
}

// leased reports whether a runner name is backed by something running.
func (o *ownership) leased(name string) bool {
	if o.runners[name] {
		return true
	}
	for _, p := range o.protected {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	// A persistent runner (drydock-<pool>-<machine>) of an owned machine is
	// offline while its machine sleeps.
	for m := range o.machines {
		if strings.HasSuffix(name, "-"+m) {
			return true
		}
	}
	return false
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

// owners collects the machines and runners that running workflows own:
// the pools' inventories (configured pools and any RunnerPool running), the
// open previews, the running RunnerJob workflows (their leased machine, and
// every runner they may have started) and the running RunnerProvision
// children (the machine they create). Search attributes answer for most of
// them in one list call; a workflow is only queried or described when they
// cannot.
func (r *Reconciler) owners(ctx context.Context) *ownership {
	o := &ownership{machines: map[string]bool{}, runners: map[string]bool{}, idle: map[string]idleMachine{}}
	r.poolOwners(ctx, o)
	r.previewOwners(ctx, o)
	r.jobOwners(ctx, o)
	r.provisionOwners(ctx, o)
	return o
}

func (r *Reconciler) poolOwners(ctx context.Context, o *ownership) {
	var names []string
	if r.Pools != nil {
		for _, p := range r.Pools.Pools {
			names = append(names, p.Name)
		}
	}
	// A pool removed from the configuration may still run and lease machines.
	err := r.list(ctx, runnerapi.RunnerPoolName, func(e *workflowpb.WorkflowExecutionInfo) {
		name := keywordAttr(e.GetSearchAttributes(), poolAttr)
		if name == "" {
			name = strings.TrimPrefix(e.GetExecution().GetWorkflowId(), runnerapi.PoolWorkflowID(""))
		}
		names = append(names, name)
	})
	if err != nil {
		o.fail("", "list pools: %v", err)
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		var inv runnerapi.Inventory
		open, err := r.query(ctx, runnerapi.PoolWorkflowID(name), runnerapi.QueryInventory, &inv)
		if err != nil {
			o.fail(name, "inventory of pool %s: %v", name, err)
			continue
		}
		if !open {
			continue // the pool is not running: it owns nothing (its jobs own their leases)
		}
		o.noteIdle(name, inv)
		for _, m := range inv.Machines {
			o.machines[m.MachineID] = true
			// A persistent runner is offline while its machine sleeps: it is backed.
			for _, n := range []string{m.RunnerName, m.PersistentRunner} {
				if n != "" {
					o.runners[n] = true
				}
			}
		}
	}
}

func (r *Reconciler) previewOwners(ctx context.Context, o *ownership) {
	err := r.list(ctx, previewWorkflowType, func(e *workflowpb.WorkflowExecutionInfo) {
		id := e.GetExecution().GetWorkflowId()
		// The machine is in the preview's search attributes: one list call
		// covers thousands of previews. Only a preview that shows none
		// although it is past pending is asked directly.
		if m := keywordAttr(e.GetSearchAttributes(), machineAttr); m != "" {
			o.machines[m] = true
			return
		}
		if keywordAttr(e.GetSearchAttributes(), phaseAttr) == "pending" {
			o.pending = append(o.pending, id)
			return
		}
		if err := r.askPreview(ctx, o, id); err != nil {
			// An open preview that cannot answer owns an unknown machine.
			o.unknown = append(o.unknown, err.Error())
		}
	})
	if err != nil {
		o.unknown = append(o.unknown, fmt.Sprintf("list previews: %v", err))
	}
}

// askPreview queries an open preview for its machine.
func (r *Reconciler) askPreview(ctx context.Context, o *ownership, id string) error {
	var st struct{ MachineID string }
	if _, err := r.query(ctx, id, previewStatusQuery, &st); err != nil {
		return fmt.Errorf("status of %s: %w", id, err)
	}
	if st.MachineID != "" {
		o.machines[st.MachineID] = true
	}
	return nil
}

// askPending asks, once a run, the previews visibility showed as pending:
// a lagging visibility (SQL visibility trails the workflows; seen on a
// cluster) can still show pending a preview that has created its machine,
// and that machine must not look unowned. Only done when a machine is
// about to be deleted, so a run that deletes nothing queries nothing. It
// reports whether every one answered.
func (r *Reconciler) askPending(ctx context.Context, o *ownership) bool {
	if !o.asked {
		o.asked = true
		for _, id := range o.pending {
			if err := r.askPreview(ctx, o, id); err != nil {
				o.unknown = append(o.unknown, err.Error())
			}
		}
	}
	return len(o.unknown) == 0
}

func (r *Reconciler) jobOwners(ctx context.Context, o *ownership) {
	err := r.list(ctx, runnerapi.RunnerJobName, func(e *workflowpb.WorkflowExecutionInfo) {
		id := e.GetExecution().GetWorkflowId()
		sa := e.GetSearchAttributes()
		pool, job := keywordAttr(sa, poolAttr), intAttr(sa, jobIDAttr)
		if job == 0 {
			job, _ = strconv.ParseInt(strings.TrimPrefix(id, "runner-job:"), 10, 64)
		}
		machine, phase := keywordAttr(sa, machineAttr), keywordAttr(sa, phaseAttr)
		if machine != "" {
			o.machines[machine] = true
		}
		if pool != "" && job != 0 {
			// Every runner the job may have started, whatever the attempt.
			o.protected = append(o.protected, fmt.Sprintf("%s%s-%d-", runnerapi.RunnerPrefix, pool, job))
		}
		// A job acquiring its first machine holds none (a lease the pool
		// just granted is in the pool's inventory); one past that shows its
		// machine in its search attributes. Ask the others.
		if pool != "" && job != 0 && (machine != "" || phase == "" || phase == string(runnerapi.JobAcquiring)) {
			return
		}
		var st runnerapi.RunnerJobStatus
		if _, err := r.query(ctx, id, runnerapi.QueryJobStatus, &st); err != nil {
			o.fail(pool, "status of %s: %v", id, err)
			return
		}
		if st.MachineID != "" {
			o.machines[st.MachineID] = true
		}
		if st.RunnerName != "" {
			o.runners[st.RunnerName] = true
		}
		if st.Pool != "" && st.JobID != 0 {
			o.protected = append(o.protected, fmt.Sprintf("%s%s-%d-", runnerapi.RunnerPrefix, st.Pool, st.JobID))
		}
	})
	if err != nil {
		o.fail("", "list runner jobs: %v", err)
	}
}

func (r *Reconciler) provisionOwners(ctx context.Context, o *ownership) {
	err := r.list(ctx, runnerapi.RunnerProvisionName, func(e *workflowpb.WorkflowExecutionInfo) {
		sa := e.GetSearchAttributes()
		if m := keywordAttr(sa, machineAttr); m != "" {
			o.machines[m] = true
			return
		}
		// Not listed with a machine yet: the create may be in flight (its
		// heartbeat carries the machine ID) or just done (the workflow's
		// own search attributes are ahead of visibility).
		pool := keywordAttr(sa, poolAttr)
		id := e.GetExecution().GetWorkflowId()
		heartbeat(ctx, "describe "+id)
		qctx, cancel := context.WithTimeout(ctx, r.queryTimeout())
		defer cancel()
		d, err := r.Temporal.DescribeWorkflowExecution(qctx, id, e.GetExecution().GetRunId())
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return // gone since the list
		}
		if err != nil {
			o.fail(pool, "describe %s: %v", id, err)
			return
		}
		if m := keywordAttr(d.GetWorkflowExecutionInfo().GetSearchAttributes(), machineAttr); m != "" {
			o.machines[m] = true
		}
		for _, pa := range d.GetPendingActivities() {
			if pa.GetActivityType().GetName() != createMachineActivity {
				continue
			}
			if ps := pa.GetHeartbeatDetails().GetPayloads(); len(ps) > 0 {
				var m string
				if converter.GetDefaultDataConverter().FromPayload(ps[0], &m) == nil && m != "" {
					o.machines[m] = true
				}
			}
		}
	})
	if err != nil {
		o.fail("", "list runner provisionings: %v", err)
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
