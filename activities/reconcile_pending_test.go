package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
)

// Visibility trails the workflows (SQL visibility on a cluster): a preview
// that has created its machine can still be listed as pending, with no
// machine in its search attributes. Its machine is not deleted: before
// deleting anything, the reconciler asks the previews listed as pending.
// A pending preview that cannot answer stops the deletions of that run.
func TestReconcileAsksPreviewsVisibilityShowsAsPending(t *testing.T) {
	ctx, c, create := reconcileRig(t)
	previewMachine, orphan := create("pending-preview"), create("orphan")

	queue := "reconcile-pending-" + t.Name()
	tc := devServer.Client()
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(fakePreview, workflow.RegisterOptions{Name: "PreviewLifecycle"})
	require.NoError(t, w.Start())
	defer w.Stop()
	pending := temporal.NewSearchAttributes(temporal.NewSearchAttributeKeyKeyword("DrydockPhase").ValueSet("pending"))
	start := func(id, workflowType string, args ...any) {
		t.Helper()
		_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue, TypedSearchAttributes: pending}, workflowType, args...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tc.TerminateWorkflow(context.Background(), id, "", "test over") })
	}
	running := func(n int64) {
		t.Helper()
		require.Eventually(t, func() bool {
			r, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
				Query: "WorkflowType = 'PreviewLifecycle' AND ExecutionStatus = 'Running' AND DrydockPhase = 'pending'"})
			return err == nil && r.GetCount() == n
		}, 10*time.Second, 100*time.Millisecond)
	}
	start("preview:recon/pending:1", "PreviewLifecycle", previewMachine)
	running(1)

	r := &activities.Reconciler{Dedalus: c, Temporal: tc, Grace: 0}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(r)
	reconcile := func() activities.ReconcileResult {
		t.Helper()
		v, err := env.ExecuteActivity(r.Reconcile)
		require.NoError(t, err)
		var res activities.ReconcileResult
		require.NoError(t, v.Get(&res))
		return res
	}
	res := reconcile()
	assert.Equal(t, []string{orphan}, res.DeletedMachines, "only the orphan goes")
	assert.Equal(t, 1, res.Owned, "the machine of the preview listed as pending is owned")
	got, err := c.GetMachine(ctx, previewMachine)
	require.NoError(t, err)
	assert.NotContains(t, []dedalus.MachinePhase{dedalus.PhaseDestroying, dedalus.PhaseDestroyed}, got.Status.Phase)

	// A preview listed as pending that cannot answer (no status query):
	// nothing is deleted, and the error says which.
	orphan2 := create("orphan-2")
	muteQueue := queue + "-mute"
	mw := worker.New(tc, muteQueue, worker.Options{})
	mw.RegisterWorkflowWithOptions(mutePreview, workflow.RegisterOptions{Name: "PreviewLifecycle"})
	require.NoError(t, mw.Start())
	defer mw.Stop()
	const muteID = "preview:recon/pending:2"
	_, err = tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: muteID, TaskQueue: muteQueue, TypedSearchAttributes: pending}, "PreviewLifecycle")
	require.NoError(t, err)
	t.Cleanup(func() { _ = tc.TerminateWorkflow(context.Background(), muteID, "", "test over") })
	running(2)
	res = reconcile()
	assert.Empty(t, res.DeletedMachines)
	assert.Equal(t, 2, res.Kept, "the orphan and the machine the mute preview may own")
	require.NotEmpty(t, res.Errors)
	assert.Contains(t, res.Errors[0], muteID)
	for _, m := range []string{previewMachine, orphan2} {
		got, err = c.GetMachine(ctx, m)
		require.NoError(t, err)
		assert.NotContains(t, []dedalus.MachinePhase{dedalus.PhaseDestroying, dedalus.PhaseDestroyed}, got.Status.Phase, m)
	}
}
