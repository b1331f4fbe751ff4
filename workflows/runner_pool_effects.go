package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// The run's side of the pool: it carries out the decisions of poolState
// (runner_pool_state.go) with Temporal commands.

// at sets the state's clock to the workflow's, before a state method runs.
func (p *pool) at(ctx workflow.Context) { p.now = workflow.Now(ctx) }

// step runs a state change at the workflow's time and carries out what it
// decided.
func (p *pool) step(ctx workflow.Context, change func()) {
	p.at(ctx)
	change()
	p.flush(ctx)
}

// apply folds one signal into the state and carries out its decisions.
func (p *pool) apply(ctx workflow.Context, s runnerapi.PoolSignal) {
	p.step(ctx, func() { p.applySignal(s) })
}

// flush carries out the decisions taken since the last flush, in order:
// children start at once, machine operations in coroutines of their own.
func (p *pool) flush(ctx workflow.Context) {
	for _, d := range p.takeDecisions() {
		switch d.kind {
		case decideProvision:
			p.runProvision(ctx, d)
		case decideSleep:
			p.runSleep(ctx, d.m)
		case decideWake:
			p.runWake(ctx, d.m)
		case decideDelete:
			p.runDelete(ctx, d.m, d.why)
		}
	}
}

// runProvision starts the RunnerProvision child of a provisioning slot and
// settles the slot with its result (or its report, whichever comes first).
func (p *pool) runProvision(ctx workflow.Context, d decision) {
	m := d.m
	why := "min_idle"
	if d.forWaiter {
		why = "a waiting job"
	}
	opts := workflow.ChildWorkflowOptions{
		WorkflowID:    m.Provision,
		StaticSummary: fmt.Sprintf("new %s runner machine for %s", p.cfg.Name, why),
		// If the pool ends, the child deletes what it created.
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		TypedSearchAttributes: temporal.NewSearchAttributes(SearchAttrPool.ValueSet(p.cfg.Name)),
	}
	// Awake: a job that queues while the machine is set up takes it
	// running; with none, the pool puts it to sleep (sleepUnwanted).
	awake := d.forWaiter || p.provAwake >= 1
	in := runnerapi.ProvisionInput{Pool: p.cfg, Seq: d.seq, KeepAwake: awake}
	if p.v >= 1 {
		// The child outlives a continue-as-new and reports to whichever
		// run is current; it deletes its machine if no pool is left.
		opts.ParentClosePolicy = enumspb.PARENT_CLOSE_POLICY_ABANDON
		in.Report = true
	}
	f := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), runnerapi.RunnerProvisionName, in)
	workflow.Go(ctx, func(gctx workflow.Context) {
		var machineID string
		err := f.Get(gctx, &machineID)
		p.step(gctx, func() { p.provisionDone(m, machineID, err, awake) })
		p.kick()
	})
}

// runSleep puts an idle machine to sleep, best effort: a machine that does
// not sleep is still idle, and its autosleep puts it to sleep later.
func (p *pool) runSleep(ctx workflow.Context, m *poolMachine) {
	p.runMachineOp(ctx, m, "sleep idle runner machine "+m.MachineID, machineActs.SleepMachine,
		func(gctx workflow.Context, slept activities.MachineRef, err error) {
			if err != nil {
				workflow.GetLogger(gctx).Warn("idle runner machine did not sleep; its autosleep will", "machine", m.MachineID, "error", err)
			} else {
				m.awake = false
				p.at(gctx)
				p.observe(m, slept)
			}
		})
}

// runWake wakes an idle machine ahead of demand; it stays idle.
func (p *pool) runWake(ctx workflow.Context, m *poolMachine) {
	p.runMachineOp(ctx, m, "prewarm runner machine "+m.MachineID, machineActs.WakeMachine,
		func(gctx workflow.Context, woke activities.MachineRef, err error) {
			if err != nil {
				workflow.GetLogger(gctx).Warn("prewarm wake failed", "machine", m.MachineID, "error", err)
			} else {
				m.awake, m.wokeAt = true, workflow.Now(gctx)
				p.at(gctx)
				p.observe(m, woke)
			}
			if m.State == runnerapi.MachineWaking { // not leased meanwhile
				m.State, m.Since = runnerapi.MachineIdle, workflow.Now(gctx)
			}
		})
}

// runMachineOp runs a sleep or wake activity on m on its own coroutine:
// when it ends, m's operation is over, done folds in its result, and the
// main loop looks at the state again.
func (p *pool) runMachineOp(ctx workflow.Context, m *poolMachine, summary string, activity any,
	done func(gctx workflow.Context, ref activities.MachineRef, err error)) {
	workflow.Go(ctx, func(gctx workflow.Context) {
		var ref activities.MachineRef
		err := workflow.ExecuteActivity(shortMachineOp(gctx, summary), activity, m.MachineID).Get(gctx, &ref)
		m.op = ""
		done(gctx, ref, err)
		p.kick()
	})
}

// runDelete deletes a machine once any operation on it finished, and
// removes it from the inventory.
func (p *pool) runDelete(ctx workflow.Context, m *poolMachine, why string) {
	workflow.Go(ctx, func(gctx workflow.Context) {
		if err := workflow.Await(gctx, func() bool { return m.op == "" }); err != nil {
			return
		}
		m.op = opDelete
		gone, err := deleteMachine(gctx, m.MachineID, why)
		if err != nil {
			return // cancelled
		}
		p.at(gctx)
		p.observe(m, gone)
		p.forget(m)
		p.kick()
	})
}

// deleteMachine deletes a machine, retrying until it is gone: a leaked
// machine costs money. Non-retryable failures (e.g. a machine in a
// transition) are retried after a pause too. It returns the delete's
// answer: what the machine was, and destroyed.
func deleteMachine(ctx workflow.Context, machineID, why string) (activities.MachineRef, error) {
	if machineID == "" {
		return activities.MachineRef{}, nil
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("delete runner machine %s (%s)", machineID, why),
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute},
	})
	pause := time.Minute
	for {
		var gone activities.MachineRef
		err := workflow.ExecuteActivity(actx, machineActs.DeleteMachine, machineID).Get(ctx, &gone)
		if err == nil {
			if gone.Phase == "" {
				gone.Phase = dedalus.PhaseDestroyed // an older worker's answer
			}
			return gone, nil
		}
		if ctx.Err() != nil {
			return activities.MachineRef{}, ctx.Err()
		}
		workflow.GetLogger(ctx).Error("delete runner machine failed; retrying", "machine", machineID, "in", pause, "error", err)
		if err := workflow.NewTimerWithOptions(ctx, pause, workflow.TimerOptions{Summary: "retry deleting " + machineID}).Get(ctx, nil); err != nil {
			return activities.MachineRef{}, err
		}
		pause = min(2*pause, 30*time.Minute)
	}
}

// shortMachineOp: sleeps and wakes take seconds; they are retried a few
// times, then given up (the pool copes: autosleep, or the job wakes it).
func shortMachineOp(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: 2 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 3},
	})
}
