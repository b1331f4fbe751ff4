package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// RunnerProvision (child of RunnerPool, ID runnerapi.ProvisionWorkflowID)
// makes one runner machine: create it, set it up, register its runner in
// persistent mode, and put it to sleep unless KeepAwake (every provisioning
// of a pool at runnerPoolProvisionAwakeVersion: the pool puts the machine to
// sleep if no job takes it). It returns the machine ID. On failure or cancellation it deletes the machine
// it created, so a failed provisioning leaves nothing behind.
func RunnerProvision(ctx workflow.Context, in runnerapi.ProvisionInput) (string, error) {
	id, err := provisionMachine(ctx, in)
	if !in.Report {
		return id, err
	}
	return reportProvisioned(ctx, in, id, err)
}

// reportProvisioned tells the pool (whichever run is current) how the
// provisioning ended. With no pool left to take it, the machine is deleted.
func reportProvisioned(ctx workflow.Context, in runnerapi.ProvisionInput, id string, err error) (string, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	r := runnerapi.MachineProvisioned{Provision: workflow.GetInfo(ctx).WorkflowExecution.ID, MachineID: id, Awake: in.KeepAwake && err == nil}
	if err != nil {
		r.MachineID, r.Error = "", err.Error()
	}
	serr := workflow.SignalExternalWorkflow(dctx, runnerapi.PoolWorkflowID(in.Pool.Name), "", runnerapi.SignalMachineProvisioned, r).Get(dctx, nil)
	var gone *temporal.UnknownExternalWorkflowExecutionError
	switch {
	case serr == nil || err != nil:
		return id, err
	case errors.As(serr, &gone):
		workflow.GetLogger(ctx).Warn("no pool to take the new machine: deleting it", "machine", id)
		if _, derr := deleteMachine(dctx, id, "its pool is gone"); derr != nil {
			workflow.GetLogger(ctx).Error("runner machine not deleted", "machine", id, "error", derr)
		}
		return "", fmt.Errorf("pool %s not running: machine %s deleted", in.Pool.Name, id)
	default:
		// The pool gives the slot up when it sees this child closed.
		workflow.GetLogger(ctx).Error("pool not told about its new machine", "machine", id, "error", serr)
		return id, nil
	}
}

// provisionMachine is RunnerProvision's work.
func provisionMachine(ctx workflow.Context, in runnerapi.ProvisionInput) (string, error) {
	_ = workflow.UpsertTypedSearchAttributes(ctx, SearchAttrPool.ValueSet(in.Pool.Name))
	id, err := createRunnerMachine(ctx, in)
	if err != nil {
		return "", err
	}
	cleanUp := func(err error) (string, error) {
		// The machine must go even when the provisioning was cancelled.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		if _, derr := deleteMachine(dctx, id, "provisioning failed"); derr != nil {
			workflow.GetLogger(ctx).Error("runner machine of a failed provisioning not deleted", "machine", id, "error", derr)
		}
		return "", err
	}
	if ctx.Err() != nil {
		return cleanUp(temporal.NewCanceledError("provisioning cancelled"))
	}
	if err := setUpRunnerMachine(ctx, in, id); err != nil {
		return cleanUp(err)
	}
	if !in.KeepAwake {
		if err := workflow.ExecuteActivity(shortMachineOp(ctx, "sleep new runner machine "+id), machineActs.SleepMachine, id).Get(ctx, nil); err != nil {
			if ctx.Err() != nil {
				return cleanUp(ctx.Err())
			}
			// Best effort: its autosleep puts it to sleep.
			workflow.GetLogger(ctx).Warn("new runner machine did not sleep", "machine", id, "error", err)
		}
	}
	return id, nil
}

// createRunnerMachine creates the machine and tells the pool about it.
func createRunnerMachine(ctx workflow.Context, in runnerapi.ProvisionInput) (string, error) {
	spec := machineSpecOf(in.Pool.Machine)
	var ref activities.MachineRef
	// Not cancellable, and retried for as long as the errors are transient:
	// a create abandoned after Dedalus made the machine (a cancellation, or
	// a lost answer followed by failed retries) would leave a machine that
	// nothing knows about.
	cctx, _ := workflow.NewDisconnectedContext(ctx)
	err := workflow.ExecuteActivity(createMachineOptions(cctx, fmt.Sprintf("create %s runner machine (%g vCPU, %d MiB, %d GiB)", in.Pool.Name, spec.VCPU, spec.MemoryMiB, spec.StorageGiB)),
		machineActs.CreateMachine, spec).Get(cctx, &ref)
	if err != nil {
		return "", fmt.Errorf("create %s runner machine: %w", in.Pool.Name, err)
	}
	id := ref.MachineID
	_ = workflow.UpsertTypedSearchAttributes(ctx, SearchAttrMachineID.ValueSet(id))
	// The pool lists the machine from now on, so the reconciler does not
	// take it for an orphan while it is being set up.
	if parent := workflow.GetInfo(ctx).ParentWorkflowExecution; parent != nil {
		err := workflow.SignalExternalWorkflow(ctx, parent.ID, "", runnerapi.SignalMachineCreated,
			runnerapi.MachineCreated{Provision: workflow.GetInfo(ctx).WorkflowExecution.ID, MachineID: id, RunningAt: ref.TransitionAt}).Get(ctx, nil)
		if err != nil {
			workflow.GetLogger(ctx).Warn("pool not told about its new machine", "machine", id, "error", err)
		}
	}
	return id, nil
}

// setUpRunnerMachine runs the pool's setup on the machine and, in
// persistent mode, registers its runner.
func setUpRunnerMachine(ctx workflow.Context, in runnerapi.ProvisionInput, id string) error {
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("set up runner machine %s (%d setup steps, runner %s)", id, len(in.Pool.Setup), runnerVersionOf(in.Pool)),
		StartToCloseTimeout: setupTimeout(in.Pool),
		// The runner activities heartbeat every few seconds: a dead worker's
		// setup moves to another worker within 20s.
		HeartbeatTimeout:    20 * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 3,
		},
	}), runnerActs.SetupMachine, activities.SetupMachineInput{Pool: in.Pool.Name, MachineID: id, Config: &in.Pool}).Get(ctx, nil)
	if err != nil {
		return fmt.Errorf("set up runner machine %s: %w", id, err)
	}
	if in.Pool.Mode != pools.ModePersistent {
		return nil
	}
	name := runnerapi.PersistentRunnerName(in.Pool.Name, id)
	err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("register persistent runner %s", name),
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    20 * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 5,
		},
	}), runnerActs.RegisterPersistent, activities.RegisterInput{Pool: in.Pool.Name, MachineID: id, RunnerName: name, Config: &in.Pool}).Get(ctx, nil)
	if err != nil {
		return fmt.Errorf("register persistent runner on %s: %w", id, err)
	}
	return nil
}

func machineSpecOf(m pools.Machine) activities.MachineSpec {
	spec := activities.MachineSpec{VCPU: m.VCPU, MemoryMiB: m.MemoryMiB, StorageGiB: m.StorageGiB, Autosleep: m.Autosleep}
	if spec.VCPU <= 0 {
		spec.VCPU = pools.DefaultVCPU
	}
	if spec.MemoryMiB <= 0 {
		spec.MemoryMiB = pools.DefaultMemoryMiB
	}
	if spec.StorageGiB <= 0 {
		spec.StorageGiB = pools.DefaultStorageGiB
	}
	if spec.Autosleep == "" {
		spec.Autosleep = pools.DefaultAutosleep
	}
	return spec
}

func runnerVersionOf(p pools.Pool) string {
	if p.RunnerVersion != "" {
		return p.RunnerVersion
	}
	return pools.DefaultRunnerVersion
}

// setupTimeout bounds SetupMachine: every setup step's timeout (default
// 15m) plus the runner install, plus slack for the calls around them.
func setupTimeout(p pools.Pool) time.Duration {
	step := func(s previewspec.Step) time.Duration {
		if d := s.Timeout.D(); d > 0 {
			return d
		}
		return previewspec.DefaultStepTimeout
	}
	total := 5 * time.Minute
	for _, s := range p.Setup {
		total += step(s)
	}
	if p.Install != nil {
		total += step(*p.Install)
	} else {
		total += previewspec.DefaultStepTimeout
	}
	return total
}
