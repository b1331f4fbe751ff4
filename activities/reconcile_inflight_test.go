package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// creatingPreview stands in for a preview whose CreateMachine is in
// flight: Dedalus made the machine and the activity heartbeat its ID, but
// the workflow does not know it yet (its status shows no machine).
func creatingPreview(ctx workflow.Context, machineID string) error {
	if err := workflow.SetQueryHandler(ctx, "status", func() (map[string]string, error) {
		return map[string]string{"MachineID": ""}, nil
	}); err != nil {
		return err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Hour, HeartbeatTimeout: time.Minute})
	return workflow.ExecuteActivity(ctx, "CreateMachine", machineID).Get(ctx, nil)
}

// A preview creating its machine owns it from the moment Dedalus made it,
// though neither its search attributes nor its status show it before the
// create returns. Seen in the cluster chaos run (RECONCILE_GRACE 1 s,
// Dedalus faults slowing the boot): the reconciler deleted the machine
// under the create, and the emulator had a machine no history knew.
func TestReconcileKeepsTheMachineAPreviewIsCreating(t *testing.T) {
	ctx, c, create := reconcileRig(t)
	provisioning, pending, orphan := create("preview-provisioning"), create("preview-pending"), create("orphan")

	queue := "reconcile-creating-" + t.Name()
	tc := devServer.Client()
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(creatingPreview, workflow.RegisterOptions{Name: "PreviewLifecycle"})
	w.RegisterActivityWithOptions(creatingMachine, activity.RegisterOptions{Name: "CreateMachine"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	phase := temporal.NewSearchAttributeKeyKeyword("DrydockPhase")
	start := workflowStarter(t, ctx, tc, queue)
	// Past pending (asked at once), and listed as pending by a visibility
	// that trails (asked before the first delete).
	start("preview:recon/creating:1", "PreviewLifecycle", temporal.NewSearchAttributes(phase.ValueSet("provisioning")), provisioning)
	start("preview:recon/creating:2", "PreviewLifecycle", temporal.NewSearchAttributes(phase.ValueSet("pending")), pending)
	for _, id := range []string{"preview:recon/creating:1", "preview:recon/creating:2"} {
		waitHeartbeat(t, ctx, tc, id)
	}
	require.Eventually(t, func() bool { return countWorkflows(t, ctx, tc, runningPreviews) >= 2 }, 10*time.Second, 100*time.Millisecond)

	res := reconcileNow(t, c, tc)
	assert.Empty(t, res.Errors)
	assert.Equal(t, []string{orphan}, res.DeletedMachines, "only the orphan goes")
	assert.Equal(t, 2, res.Owned, "the machines being created are owned")
	assertInUse(t, ctx, c, provisioning, pending)
}

// unreportedCreate stands in for a CreateMachine whose worker has not
// heartbeat the machine (Dedalus may have made it, and the worker may have
// died before reporting it): it blocks until cancelled.
func unreportedCreate(ctx context.Context, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

// A create in flight that has not reported its machine may have made one:
// the reconciler deletes nothing that run, and says which workflow it
// waits for, rather than take that machine for an orphan.
func TestReconcileWaitsForACreateThatHasNotReportedItsMachine(t *testing.T) {
	ctx, c, create := reconcileRig(t)
	orphan := create("orphan")

	queue := "reconcile-unreported-" + t.Name()
	tc := devServer.Client()
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(creatingPreview, workflow.RegisterOptions{Name: "PreviewLifecycle"})
	w.RegisterActivityWithOptions(unreportedCreate, activity.RegisterOptions{Name: "CreateMachine"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	const id = "preview:recon/unreported:1"
	workflowStarter(t, ctx, tc, queue)(id, "PreviewLifecycle",
		temporal.NewSearchAttributes(temporal.NewSearchAttributeKeyKeyword("DrydockPhase").ValueSet("provisioning")), "")
	require.Eventually(t, func() bool {
		d, err := tc.DescribeWorkflowExecution(ctx, id, "")
		return err == nil && len(d.GetPendingActivities()) == 1 && d.GetPendingActivities()[0].GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED
	}, 10*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool { return countWorkflows(t, ctx, tc, runningPreviews) >= 1 }, 10*time.Second, 100*time.Millisecond)

	res := reconcileNow(t, c, tc)
	assert.Empty(t, res.DeletedMachines)
	assert.Equal(t, 1, res.Kept, "the orphan is kept while the create has not reported")
	require.NotEmpty(t, res.Errors)
	assert.Contains(t, res.Errors[0], id)
	assert.Contains(t, res.Errors[0], "has not reported its machine")
	assertInUse(t, ctx, c, orphan)
}

// A RunnerJob whose lease the pool granted, listed before its search
// attributes show the machine (visibility trails; on the fast path the
// wake and the runner start run before the workflow task that records
// them completes), owns the machine even when the pool that leased it is
// gone (terminated: its next run does not know the lease). Seen in the
// cluster chaos run: the reconciler deleted the machine while the job's
// runner started on it, and the pool then deleted it as broken.
func TestReconcileAsksJobsListedAsAcquiring(t *testing.T) {
	ctx, c, create := reconcileRig(t)
	acquiring, unphased, orphan := create("job-acquiring"), create("job-unphased"), create("orphan")

	queue := "reconcile-acquiring-" + t.Name()
	tc := devServer.Client()
	startWorkflowWorker(t, tc, queue, map[string]any{runnerapi.RunnerJobName: fakeJob})

	const pool = "acquiring"
	poolAttr := temporal.NewSearchAttributeKeyKeyword("DrydockPool").ValueSet(pool)
	jobAttr := temporal.NewSearchAttributeKeyInt64("DrydockJobID")
	phaseAttr := temporal.NewSearchAttributeKeyKeyword("DrydockPhase")
	start := workflowStarter(t, ctx, tc, queue)
	start(runnerapi.JobWorkflowID(201), runnerapi.RunnerJobName,
		temporal.NewSearchAttributes(poolAttr, jobAttr.ValueSet(201), phaseAttr.ValueSet(string(runnerapi.JobAcquiring))),
		runnerapi.RunnerJobStatus{Pool: pool, JobID: 201, MachineID: acquiring, RunnerName: runnerapi.RunnerName(pool, 201, 1)})
	start(runnerapi.JobWorkflowID(202), runnerapi.RunnerJobName,
		temporal.NewSearchAttributes(poolAttr, jobAttr.ValueSet(202)),
		runnerapi.RunnerJobStatus{Pool: pool, JobID: 202, MachineID: unphased})
	waitListed(t, ctx, tc, "WorkflowType = 'RunnerJob' AND ExecutionStatus = 'Running' AND DrydockPool = '"+pool+"'", 2)

	res := reconcileNow(t, c, tc)
	assert.Empty(t, res.Errors)
	assert.Equal(t, []string{orphan}, res.DeletedMachines, "only the orphan goes")
	assert.Equal(t, 2, res.Owned, "the leased machines are owned")
	assertInUse(t, ctx, c, acquiring, unphased)
}

// A RunnerJob on its second attempt still shows the first attempt's
// machine in its search attributes while it acquires, wakes and starts on
// the next one (the phase upsert carries the machine the status had then;
// the job upserts the new machine when its runner picks the job up). That
// machine is the job's even when the pool that leased it is gone. Seen in
// the cluster chaos run (a runner start failed under GitHub faults, the
// pool was terminated): the reconciler took the attribute for the job's
// whole claim, deleted the new lease while its runner started, and the job
// then returned it as broken.
func TestReconcileAsksARetryingJobForItsNewLease(t *testing.T) {
	ctx, c, create := reconcileRig(t)
	first, retried, orphan := create("job-first-attempt"), create("job-second-attempt"), create("orphan")
	// Visibility, trailing, can still show the first attempt's later phase.
	stale, staleNext := create("job-stale-first"), create("job-stale-second")

	queue := "reconcile-retrying-" + t.Name()
	tc := devServer.Client()
	startWorkflowWorker(t, tc, queue, map[string]any{runnerapi.RunnerJobName: fakeJob})

	const pool = "retrying"
	start := workflowStarter(t, ctx, tc, queue)
	for _, j := range []struct {
		id             int64
		phase          runnerapi.RunnerJobPhase
		listed, leased string
	}{{301, runnerapi.JobAcquiring, first, retried}, {302, runnerapi.JobWaiting, stale, staleNext}} {
		start(runnerapi.JobWorkflowID(j.id), runnerapi.RunnerJobName,
			temporal.NewSearchAttributes(
				temporal.NewSearchAttributeKeyKeyword("DrydockPool").ValueSet(pool),
				temporal.NewSearchAttributeKeyInt64("DrydockJobID").ValueSet(j.id),
				temporal.NewSearchAttributeKeyKeyword("DrydockPhase").ValueSet(string(j.phase)),
				temporal.NewSearchAttributeKeyKeyword("DrydockMachineID").ValueSet(j.listed)),
			runnerapi.RunnerJobStatus{Pool: pool, JobID: j.id, Attempt: 2, MachineID: j.leased, RunnerName: runnerapi.RunnerName(pool, j.id, 2)})
	}
	waitListed(t, ctx, tc, "WorkflowType = 'RunnerJob' AND ExecutionStatus = 'Running' AND DrydockPool = '"+pool+"'", 2)

	res := reconcileNow(t, c, tc)
	assert.Empty(t, res.Errors)
	assert.Equal(t, []string{orphan}, res.DeletedMachines, "only the orphan goes (and no machine listed beside a job)")
	assertInUse(t, ctx, c, retried, staleNext)
}

// waitHeartbeat waits until workflow id's pending activity has heartbeat.
func waitHeartbeat(t *testing.T, ctx context.Context, tc client.Client, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		d, err := tc.DescribeWorkflowExecution(ctx, id, "")
		return err == nil && len(d.GetPendingActivities()) == 1 && d.GetPendingActivities()[0].GetHeartbeatDetails() != nil
	}, 10*time.Second, 100*time.Millisecond)
}
