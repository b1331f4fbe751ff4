package activities_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

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
	startWorkflowWorker(t, tc, queue, map[string]any{"PreviewLifecycle": fakePreview})
	pending := temporal.NewSearchAttributes(temporal.NewSearchAttributeKeyKeyword("DrydockPhase").ValueSet("pending"))
	running := func(n int64) {
		t.Helper()
		require.Eventually(t, func() bool {
			r, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
				Query: "WorkflowType = 'PreviewLifecycle' AND ExecutionStatus = 'Running' AND DrydockPhase = 'pending'"})
			return err == nil && r.GetCount() == n
		}, 10*time.Second, 100*time.Millisecond)
	}
	workflowStarter(t, ctx, tc, queue)("preview:recon/pending:1", "PreviewLifecycle", pending, previewMachine)
	running(1)

	r := &activities.Reconciler{Dedalus: c, Temporal: tc, Grace: 0}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(r)
	res := reconcileOnce(t, env, r)
	assert.Equal(t, []string{orphan}, res.DeletedMachines, "only the orphan goes")
	assert.Equal(t, 1, res.Owned, "the machine of the preview listed as pending is owned")
	got, err := c.GetMachine(ctx, previewMachine)
	require.NoError(t, err)
	assert.NotContains(t, []dedalus.MachinePhase{dedalus.PhaseDestroying, dedalus.PhaseDestroyed}, got.Status.Phase)

	// A preview listed as pending that cannot answer (no status query):
	// nothing is deleted, and the error says which.
	orphan2 := create("orphan-2")
	muteQueue := queue + "-mute"
	startWorkflowWorker(t, tc, muteQueue, map[string]any{"PreviewLifecycle": mutePreview})
	const muteID = "preview:recon/pending:2"
	workflowStarter(t, ctx, tc, muteQueue)(muteID, "PreviewLifecycle", pending)
	running(2)
	res = reconcileOnce(t, env, r)
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
