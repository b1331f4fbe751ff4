package activities_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
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

	res := reconcileNow(t, c, tc)
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

// createdProvision stands in for a RunnerProvision whose CreateMachine has
// returned, and whose next workflow task (which records the machine in its
// search attributes and tells the pool) has not run: its worker died, or
// Temporal restarted. It never gets there.
func createdProvision(ctx workflow.Context, machineID string) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	var ref activities.MachineRef
	if err := workflow.ExecuteActivity(ctx, "CreateMachine", machineID).Get(ctx, &ref); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

// A RunnerProvision whose create has returned owns the machine before it
// records it: no create is pending, its search attributes show none yet,
// and its pool's slot has no machine ID. Found by review: the reconciler
// saw nobody's machine there, past the grace period (the create waits for
// the boot).
func TestReconcileReadsAProvisionsCompletedCreate(t *testing.T) {
	ctx, c, create := reconcileRig(t)
	created, orphan := create("provision-created"), create("orphan")

	queue := "reconcile-created-" + t.Name()
	tc := devServer.Client()
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(createdProvision, workflow.RegisterOptions{Name: runnerapi.RunnerProvisionName})
	w.RegisterActivityWithOptions(func(_ context.Context, id string) (activities.MachineRef, error) {
		return activities.MachineRef{MachineID: id, Phase: dedalus.PhaseRunning}, nil
	}, activity.RegisterOptions{Name: "CreateMachine"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	const id = "runner-provision:created:1"
	workflowStarter(t, ctx, tc, queue)(id, runnerapi.RunnerProvisionName,
		temporal.NewSearchAttributes(temporal.NewSearchAttributeKeyKeyword("DrydockPool").ValueSet("created")), created)
	require.Eventually(t, func() bool {
		d, err := tc.DescribeWorkflowExecution(ctx, id, "")
		return err == nil && len(d.GetPendingActivities()) == 0 && d.GetWorkflowExecutionInfo().GetHistoryLength() >= 8
	}, 10*time.Second, 100*time.Millisecond)
	waitListed(t, ctx, tc, "WorkflowType = 'RunnerProvision' AND ExecutionStatus = 'Running' AND DrydockPool = 'created'", 1)

	res := reconcileNow(t, c, tc)
	assert.Empty(t, res.Errors)
	assert.Equal(t, []string{orphan}, res.DeletedMachines, "only the orphan goes")
	assertInUse(t, ctx, c, created)
}

// A machine moves from its RunnerProvision to its pool (the provision
// tells the pool, then ends): the reconciler reads the provisions before
// the pools, so a move between the two reads is seen on one side or the
// other. Found by review: read in the other order, a provision that ended
// between them had handed its machine to a pool already read.
func TestReconcileReadsProvisionsBeforePools(t *testing.T) {
	ctx, c, create := reconcileRig(t)
	moving, orphan := create("moving"), create("orphan")

	const poolName, provision = "moving", "runner-provision:moving:1"
	tc := devServer.Client()
	var moved sync.Once
	// The pool's first inventory is read before the move: it has no
	// machine yet; reading it sets the move off (the provision ends) and
	// answers once visibility no longer lists the provision.
	pool := func(wctx workflow.Context) error {
		if err := workflow.SetQueryHandler(wctx, runnerapi.QueryInventory, func() (runnerapi.Inventory, error) {
			first := false
			moved.Do(func() {
				first = true
				_ = tc.TerminateWorkflow(ctx, provision, "", "handed its machine to the pool")
				q := &workflowservice.CountWorkflowExecutionsRequest{Query: "WorkflowId = '" + provision + "' AND ExecutionStatus = 'Running'"}
				for i := 0; i < 100; i++ { // not countWorkflows: no require off the test's goroutine
					if n, err := tc.CountWorkflow(ctx, q); err == nil && n.GetCount() == 0 {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
			inv := runnerapi.Inventory{Pool: poolName}
			if !first {
				inv.Machines = []runnerapi.PoolMachine{{MachineID: moving, State: runnerapi.MachineIdle}}
			}
			return inv, nil
		}); err != nil {
			return err
		}
		return workflow.Await(wctx, func() bool { return false })
	}
	queue := "reconcile-moving-" + t.Name()
	startWorkflowWorker(t, tc, queue, map[string]any{runnerapi.RunnerPoolName: pool, runnerapi.RunnerProvisionName: mutePreview})
	start := workflowStarter(t, ctx, tc, queue)
	poolAttr := temporal.NewSearchAttributeKeyKeyword("DrydockPool").ValueSet(poolName)
	start(runnerapi.PoolWorkflowID(poolName), runnerapi.RunnerPoolName, temporal.NewSearchAttributes(poolAttr))
	start(provision, runnerapi.RunnerProvisionName,
		temporal.NewSearchAttributes(poolAttr, temporal.NewSearchAttributeKeyKeyword("DrydockMachineID").ValueSet(moving)))
	waitListed(t, ctx, tc, "DrydockPool = '"+poolName+"' AND ExecutionStatus = 'Running'", 2)

	res := reconcileNow(t, c, tc)
	assert.Empty(t, res.Errors)
	assert.Equal(t, []string{orphan}, res.DeletedMachines, "only the orphan goes")
	assertInUse(t, ctx, c, moving)
}
