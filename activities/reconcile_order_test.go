package activities_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
)

// A machine made after its owner was read is young, however long the rest
// of the reads take: the owner that made it was read before it had it.
// Found by review: a preview asked at once (listed past pending, no
// machine yet) that created its machine while the reconciler asked the
// other owners looked, at the sweep, like an orphan older than the grace
// period (RECONCILE_GRACE is 1 s in the cluster chaos run).
func TestReconcileKeepsAMachineMadeAfterItsOwnerWasRead(t *testing.T) {
	ctx, c, create := reconcileRig(t)
	orphan := create("orphan")

	// The preview creates its machine as soon as it has answered that it
	// has none (the query handler stands in for the create that follows).
	var made struct {
		sync.Mutex
		id  string
		err error
	}
	preview := func(wctx workflow.Context) error {
		if err := workflow.SetQueryHandler(wctx, "status", func() (map[string]string, error) {
			made.Lock()
			defer made.Unlock()
			if made.id == "" && made.err == nil {
				m, err := c.CreateMachine(ctx, dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 5}, "made-after-read")
				if made.err = err; err == nil {
					made.id = m.MachineID
				}
			}
			return map[string]string{"MachineID": ""}, nil
		}); err != nil {
			return err
		}
		return workflow.Await(wctx, func() bool { return false })
	}
	queue := "reconcile-made-after-" + t.Name()
	tc := devServer.Client()
	startWorkflowWorker(t, tc, queue, map[string]any{"PreviewLifecycle": preview})
	workflowStarter(t, ctx, tc, queue)("preview:recon/made-after:1", "PreviewLifecycle",
		temporal.NewSearchAttributes(temporal.NewSearchAttributeKeyKeyword("DrydockPhase").ValueSet("provisioning")))
	require.Eventually(t, func() bool { return countWorkflows(t, ctx, tc, runningPreviews) >= 1 }, 10*time.Second, 100*time.Millisecond)

	r := &activities.Reconciler{Dedalus: c, Temporal: tc, Grace: 0}
	env, _ := meteredActivityEnv(r)
	res := reconcileOnce(t, env, r)
	made.Lock()
	defer made.Unlock()
	require.NoError(t, made.err)
	require.NotEmpty(t, made.id, "the preview was asked")
	assert.Equal(t, []string{orphan}, res.DeletedMachines, "only the orphan goes")
	assert.Equal(t, 1, res.Young, "the machine made after the read is young")
	got, err := c.GetMachine(ctx, made.id)
	require.NoError(t, err)
	assert.NotEqual(t, dedalus.PhaseDestroying, got.Status.Phase)
	assert.NotEqual(t, dedalus.PhaseDestroyed, got.Status.Phase)
}
