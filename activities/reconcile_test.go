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
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// fakePool answers the inventory query with the machines it is given.
func fakePool(ctx workflow.Context, in runnerapi.PoolInput) error {
	inv := runnerapi.Inventory{Pool: in.Pool.Name, Machines: in.Carry.Machines}
	if err := workflow.SetQueryHandler(ctx, runnerapi.QueryInventory, func() (runnerapi.Inventory, error) { return inv, nil }); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

// fakePreview answers the status query with its machine.
func fakePreview(ctx workflow.Context, machineID string) error {
	if err := workflow.SetQueryHandler(ctx, "status", func() (map[string]string, error) {
		return map[string]string{"MachineID": machineID}, nil
	}); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

type runnerDir struct {
	runners []activities.RegisteredRunner
	removed []int64
}

func (d *runnerDir) ListRunners(context.Context, pools.Scope) ([]activities.RegisteredRunner, error) {
	return d.runners, nil
}

func (d *runnerDir) RemoveRunner(_ context.Context, _ pools.Scope, id int64) error {
	d.removed = append(d.removed, id)
	return nil
}

func TestReconcileDeletesOnlyUnownedMachinesAndRunners(t *testing.T) {
	emu, c := startEmulator(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	create := func(key string) string {
		m, err := c.CreateMachine(ctx, dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 5}, key)
		require.NoError(t, err)
		return m.MachineID
	}
	poolMachine, previewMachine, orphan := create("pool"), create("preview"), create("orphan")
	listedMachine := create("listed")

	queue := "reconcile-" + t.Name()
	tc := devServer.Client()
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(fakePool, workflow.RegisterOptions{Name: runnerapi.RunnerPoolName})
	w.RegisterWorkflowWithOptions(fakePreview, workflow.RegisterOptions{Name: "PreviewLifecycle"})
	require.NoError(t, w.Start())
	defer w.Stop()
	pool := pools.Pool{Name: "recon", Scope: pools.Scope{Kind: pools.ScopeOrg, Org: "octo"}}
	leased := runnerapi.RunnerName("recon", 1, 1)
	_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: runnerapi.PoolWorkflowID("recon"), TaskQueue: queue}, runnerapi.RunnerPoolName,
		runnerapi.PoolInput{Pool: pool, Carry: &runnerapi.PoolCarry{Machines: []runnerapi.PoolMachine{{MachineID: poolMachine, State: runnerapi.MachineState("busy"), RunnerName: leased}}}})
	require.NoError(t, err)
	_, err = tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "preview:recon/test:1", TaskQueue: queue}, "PreviewLifecycle", previewMachine)
	require.NoError(t, err)
	// A preview listed with its machine in its search attributes is not
	// queried (thousands of previews cost one list call): this one would
	// answer the query with no machine.
	_, err = tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "preview:recon/test:2", TaskQueue: queue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			temporal.NewSearchAttributeKeyKeyword("DrydockMachineID").ValueSet(listedMachine),
			temporal.NewSearchAttributeKeyKeyword("DrydockPhase").ValueSet("ready")),
	}, "PreviewLifecycle", "")
	require.NoError(t, err)
	defer func() {
		_ = tc.TerminateWorkflow(context.Background(), runnerapi.PoolWorkflowID("recon"), "", "test over")
		_ = tc.TerminateWorkflow(context.Background(), "preview:recon/test:1", "", "test over")
		_ = tc.TerminateWorkflow(context.Background(), "preview:recon/test:2", "", "test over")
	}()
	// Visibility is eventually consistent: wait until the previews are listed.
	require.Eventually(t, func() bool {
		n, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: "WorkflowType = 'PreviewLifecycle' AND ExecutionStatus = 'Running'"})
		return err == nil && n.GetCount() >= 2
	}, 10*time.Second, 100*time.Millisecond)

	dir := &runnerDir{runners: []activities.RegisteredRunner{
		{ID: 1, Name: leased},                                             // offline but leased: kept
		{ID: 2, Name: runnerapi.RunnerName("recon", 9, 1)},                // offline, unleased, ours: removed
		{ID: 3, Name: runnerapi.RunnerName("recon", 10, 1), Online: true}, // online: kept
		{ID: 4, Name: "someone-elses-runner"},                             // not ours: kept
	}}
	r := &activities.Reconciler{Dedalus: c, Temporal: tc, Pools: &pools.Config{Pools: []pools.Pool{pool}}, Runners: dir, Grace: 0}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(r)

	// Within the grace period nothing is deleted.
	r.Grace = time.Hour
	v, err := env.ExecuteActivity(r.Reconcile)
	require.NoError(t, err)
	var res activities.ReconcileResult
	require.NoError(t, v.Get(&res))
	assert.Equal(t, 4, res.Machines)
	assert.Equal(t, 3, res.Owned)
	assert.Equal(t, 1, res.Young)
	assert.Empty(t, res.DeletedMachines)

	r.Grace = 0
	v, err = env.ExecuteActivity(r.Reconcile)
	require.NoError(t, err)
	require.NoError(t, v.Get(&res))
	assert.Equal(t, []string{orphan}, res.DeletedMachines)
	assert.Equal(t, []string{runnerapi.RunnerName("recon", 9, 1)}, res.RemovedRunners)
	assert.Empty(t, res.Errors)
	_, err = c.WaitForPhase(ctx, orphan, dedalus.PhaseDestroyed)
	require.NoError(t, err)
	assert.Equal(t, 3, emu.Stats().LiveMachines, "owned machines are untouched")
}
