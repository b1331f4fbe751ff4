package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/converter"

	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

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
	// toAsk are the running RunnerJobs listed as acquiring a machine
	// (or before their first phase), or with a machine no running pool
	// leases to them (jobOwner). A lease granted by a pool run that is
	// gone since (terminated: the next run does not know it) is in no
	// inventory, and visibility shows the job's machine only after the
	// workflow task that leased it completes (on the fast path, after the
	// wake and the runner start): they are asked with the pending
	// previews.
	toAsk []listedJob
	asked bool
	// leases are the machines the running pools lease, by machine ID: the
	// job each is leased to.
	leases map[string]int64
	// began is when the reads began: a machine made after it is young
	// whatever the grace period (the owner that made it may have been
	// read before it had it).
	began time.Time
}

// listedJob is a running RunnerJob as visibility listed it.
type listedJob struct{ id, pool string }

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

// owners collects the machines and runners that running workflows own:
// the pools' inventories (configured pools and any RunnerPool running), the
// open previews, the running RunnerJob workflows (their leased machine, and
// every runner they may have started) and the running RunnerProvision
// children (the machine they create). Search attributes answer for most of
// them in one list call; a workflow is only queried or described when they
// cannot.
func (r *Reconciler) owners(ctx context.Context) *ownership {
	o := &ownership{machines: map[string]bool{}, runners: map[string]bool{}, idle: map[string]idleMachine{},
		leases: map[string]int64{}, began: time.Now()}
	// Machines move from a provisioning to its pool: the provisionings
	// are read first, so a move between the two reads is seen on one side
	// or the other. (A lease leaves the machine in its pool's inventory:
	// the jobs are read after the pools only in case a pool is gone.)
	r.provisionOwners(ctx, o)
	r.poolOwners(ctx, o)
	r.previewOwners(ctx, o)
	r.jobOwners(ctx, o)
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
		o.noteInventory(name, inv)
	}
}

// noteInventory notes what a running pool owns: its machines, their
// leases and runners.
func (o *ownership) noteInventory(pool string, inv runnerapi.Inventory) {
	o.noteIdle(pool, inv)
	for _, m := range inv.Machines {
		o.machines[m.MachineID] = true
		if m.MachineID != "" && m.JobID != 0 {
			o.leases[m.MachineID] = m.JobID
		}
		// A persistent runner is offline while its machine sleeps: it is backed.
		for _, n := range []string{m.RunnerName, m.PersistentRunner} {
			if n != "" {
				o.runners[n] = true
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

// askPreview asks an open preview for its machine: the one its
// CreateMachine has made (in flight, the workflow does not know it yet),
// then its status. In that order: a create that completes between the two
// shows in the status.
func (r *Reconciler) askPreview(ctx context.Context, o *ownership, id string) error {
	if _, err := r.describeMachines(ctx, o, id, ""); err != nil {
		return fmt.Errorf("describe %s: %w", id, err)
	}
	var st struct{ MachineID string }
	if _, err := r.query(ctx, id, previewStatusQuery, &st); err != nil {
		return fmt.Errorf("status of %s: %w", id, err)
	}
	if st.MachineID != "" {
		o.machines[st.MachineID] = true
	}
	return nil
}

// describeMachines notes the machines a workflow's description shows: the
// one its in-flight CreateMachine activity has heartbeat
// (Machines.CreateMachine records it as soon as Dedalus answers), and the
// one its own search attributes show (ahead of visibility's). A workflow
// that is gone shows none. noted counts the machines it noted.
func (r *Reconciler) describeMachines(ctx context.Context, o *ownership, id, runID string) (noted int, err error) {
	heartbeat(ctx, "describe "+id)
	qctx, cancel := context.WithTimeout(ctx, r.queryTimeout())
	defer cancel()
	d, err := r.Temporal.DescribeWorkflowExecution(qctx, id, runID)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	note := func(m string) {
		o.machines[m] = true
		noted++
	}
	if m := keywordAttr(d.GetWorkflowExecutionInfo().GetSearchAttributes(), machineAttr); m != "" {
		note(m)
	}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityType().GetName() != createMachineActivity {
			continue
		}
		m := ""
		if ps := pa.GetHeartbeatDetails().GetPayloads(); len(ps) > 0 {
			_ = converter.GetDefaultDataConverter().FromPayload(ps[0], &m)
		}
		switch {
		case m != "":
			note(m)
		case pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED || pa.GetAttempt() > 1:
			// Dedalus may have made the machine and the worker died
			// before it heartbeat the ID: a retry (same idempotency key)
			// finds it again. Until then it is an unknown owner's.
			return noted, fmt.Errorf("its CreateMachine (attempt %d) has not reported its machine yet", pa.GetAttempt())
		}
	}
	return noted, nil
}

// createdMachines notes the machines a workflow's completed CreateMachine
// activities returned, from its history: a create that has returned is no
// longer pending, and the workflow records the machine (search attributes,
// the pool's signal) only in its next workflow task, which a dead worker or
// a restarting Temporal can hold up for a while.
func (r *Reconciler) createdMachines(ctx context.Context, o *ownership, id, runID string) error {
	heartbeat(ctx, "history "+id)
	hctx, cancel := context.WithTimeout(ctx, r.queryTimeout())
	defer cancel()
	creates := map[int64]bool{} // scheduled event IDs of CreateMachine
	it := r.Temporal.GetWorkflowHistory(hctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return nil
		}
		if err != nil {
			return err
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == createMachineActivity {
			creates[e.GetEventId()] = true
		}
		a := e.GetActivityTaskCompletedEventAttributes()
		if a == nil || !creates[a.GetScheduledEventId()] || len(a.GetResult().GetPayloads()) == 0 {
			continue
		}
		var ref MachineRef
		if err := converter.GetDefaultDataConverter().FromPayload(a.GetResult().GetPayloads()[0], &ref); err != nil {
			return fmt.Errorf("its CreateMachine's result: %w", err)
		}
		if ref.MachineID != "" {
			o.machines[ref.MachineID] = true
		}
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
		for _, j := range o.toAsk {
			r.askJob(ctx, o, j.id, j.pool)
		}
	}
	return len(o.unknown) == 0
}

func (r *Reconciler) jobOwners(ctx context.Context, o *ownership) {
	err := r.list(ctx, runnerapi.RunnerJobName, func(e *workflowpb.WorkflowExecutionInfo) {
		r.jobOwner(ctx, o, e)
	})
	if err != nil {
		o.fail("", "list runner jobs: %v", err)
	}
}

// jobOwner notes what one running RunnerJob owns: from its search
// attributes, or, when they cannot tell, from its status (askJob).
func (r *Reconciler) jobOwner(ctx context.Context, o *ownership, e *workflowpb.WorkflowExecutionInfo) {
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
		o.protectJob(pool, job)
		// The listed machine is the job's whole claim only when a running
		// pool leases it to the job: visibility trails the job (it can
		// show an earlier attempt's machine, or none while the job
		// acquires, wakes and starts on the next), and a lease granted by
		// a pool run that is gone since is in no inventory. Any other job
		// is asked before anything is deleted (askPending).
		if machine != "" && o.leases[machine] == job {
			return
		}
		if machine != "" || phase == "" || phase == string(runnerapi.JobAcquiring) {
			o.toAsk = append(o.toAsk, listedJob{id: id, pool: pool})
			return
		}
	}
	r.askJob(ctx, o, id, pool)
}

// askJob queries a running RunnerJob for its machine, runner and job.
func (r *Reconciler) askJob(ctx context.Context, o *ownership, id, pool string) {
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
		o.protectJob(st.Pool, st.JobID)
	}
}

// protectJob keeps every runner the job may have started, whatever the
// attempt (drydock-<pool>-<job>-).
func (o *ownership) protectJob(pool string, job int64) {
	o.protected = append(o.protected, fmt.Sprintf("%s%s-%d-", runnerapi.RunnerPrefix, pool, job))
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
		id, run := e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()
		noted, err := r.describeMachines(ctx, o, id, run)
		if err == nil && noted == 0 {
			// Or already returned, and not recorded yet.
			err = r.createdMachines(ctx, o, id, run)
		}
		if err != nil {
			o.fail(pool, "describe %s: %v", id, err)
		}
	})
	if err != nil {
		o.fail("", "list runner provisionings: %v", err)
	}
}
