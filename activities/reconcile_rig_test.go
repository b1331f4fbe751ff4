package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/emulator"
)

// reconcileRig is an emulator, its client, a context for the test, and a
// function that creates a machine (idempotency key key) and returns its ID.
func reconcileRig(t *testing.T) (context.Context, *dedalus.Client, func(key string) string) {
	t.Helper()
	_, ctx, c, create := emulatorRig(t, 2*time.Minute)
	return ctx, c, create
}

// emulatorRig is reconcileRig with the emulator, and a context that ends
// after timeout; create makes a machine and waits for it to run.
func emulatorRig(t *testing.T, timeout time.Duration) (*emulator.Server, context.Context, *dedalus.Client, func(key string) string) {
	t.Helper()
	emu, c := startEmulator(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return emu, ctx, c, func(key string) string {
		m, err := c.CreateMachine(ctx, dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 5}, key)
		require.NoError(t, err)
		// Booted, as a machine a workflow uses is: "still running" after a
		// reconciliation then means "not deleted", not "booted in time".
		_, err = c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseRunning)
		require.NoError(t, err)
		return m.MachineID
	}
}

// workflowStarter returns a function that starts a workflow on queue of the
// dev server, with search attributes sa; each is terminated when the test
// ends.
func workflowStarter(t *testing.T, ctx context.Context, tc client.Client, queue string) func(id, workflowType string, sa temporal.SearchAttributes, args ...any) {
	return func(id, workflowType string, sa temporal.SearchAttributes, args ...any) {
		t.Helper()
		_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue, TypedSearchAttributes: sa}, workflowType, args...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tc.TerminateWorkflow(context.Background(), id, "", "test over") })
	}
}

// countWorkflows is how many workflows visibility lists for query.
func countWorkflows(t *testing.T, ctx context.Context, tc client.Client, query string) int64 {
	t.Helper()
	n, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
	require.NoError(t, err)
	return n.GetCount()
}

// reconcileNow runs one reconciliation with no grace period (every
// machine is old enough) against the emulator c and the dev server tc.
func reconcileNow(t *testing.T, c *dedalus.Client, tc client.Client) activities.ReconcileResult {
	t.Helper()
	r := &activities.Reconciler{Dedalus: c, Temporal: tc, Grace: 0}
	env, _ := meteredActivityEnv(r)
	return reconcileOnce(t, env, r)
}

// waitListed waits until visibility lists exactly n workflows for query.
func waitListed(t *testing.T, ctx context.Context, tc client.Client, query string, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return countWorkflows(t, ctx, tc, query) == n }, 10*time.Second, 100*time.Millisecond)
}

// reconcileOnce runs r.Reconcile as an activity in env.
func reconcileOnce(t *testing.T, env *testsuite.TestActivityEnvironment, r *activities.Reconciler) activities.ReconcileResult {
	t.Helper()
	v, err := env.ExecuteActivity(r.Reconcile)
	require.NoError(t, err)
	var res activities.ReconcileResult
	require.NoError(t, v.Get(&res))
	return res
}

// startWorkflowWorker starts a worker on queue of the dev server that runs
// workflows (by type name); it stops when the test ends.
func startWorkflowWorker(t *testing.T, tc client.Client, queue string, workflows map[string]any) {
	t.Helper()
	w := worker.New(tc, queue, worker.Options{})
	for name, wf := range workflows {
		w.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: name})
	}
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
}
