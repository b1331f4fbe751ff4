package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// prewarmRecorder stands in for a RunnerPool: it records prewarm signals.
func prewarmRecorder(ctx workflow.Context, _ runnerapi.PoolInput) error {
	var got []int
	if err := workflow.SetQueryHandler(ctx, "prewarms", func() ([]int, error) { return got, nil }); err != nil {
		return err
	}
	ch := workflow.GetSignalChannel(ctx, runnerapi.SignalPrewarm)
	for {
		var req runnerapi.PrewarmRequest
		ch.Receive(ctx, &req)
		got = append(got, req.Count)
	}
}

func TestPoolSchedulesPrewarmThePool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc := temporalClient
	// The pool here is a stand-in registered under RunnerPool's name: replay only the real prewarm.
	keepHistories(t, tc, "WorkflowType = '"+workflows.RunnerPrewarmName+"'",
		map[string]runMatcher{"runner-prewarm": withIDPrefix("runner-prewarm:sched-a:0")})
	w := worker.New(tc, workflows.TaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(workflows.RunnerPrewarm, workflow.RegisterOptions{Name: workflows.RunnerPrewarmName})
	w.RegisterWorkflowWithOptions(prewarmRecorder, workflow.RegisterOptions{Name: runnerapi.RunnerPoolName})
	require.NoError(t, w.Start())
	defer w.Stop()

	cfg := &pools.Config{Pools: []pools.Pool{
		{Name: "sched-a", Mode: pools.ModeJIT, Prewarm: []pools.Prewarm{{Cron: "50 8 * * 1-5", Count: 3}}},
		{Name: "sched-b", Mode: pools.ModePersistent, MaxMachines: 4},
	}}
	require.NoError(t, workflows.EnsurePoolSchedules(ctx, tc, cfg))
	require.NoError(t, workflows.EnsurePoolSchedules(ctx, tc, cfg), "idempotent: a second start updates in place")

	desc, err := tc.ScheduleClient().GetHandle(ctx, "runner-prewarm:sched-a:0").Describe(ctx)
	require.NoError(t, err)
	assert.NotEmpty(t, desc.Info.NextActionTimes)
	_, err = tc.ScheduleClient().GetHandle(ctx, "runner-keepalive:sched-b").Describe(ctx)
	require.NoError(t, err, "persistent pools get a weekly keepalive")

	// Triggering the schedule signals the running pool.
	_, err = tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: runnerapi.PoolWorkflowID("sched-a"), TaskQueue: workflows.TaskQueue},
		runnerapi.RunnerPoolName, runnerapi.PoolInput{Pool: cfg.Pools[0]})
	require.NoError(t, err)
	defer func() {
		_ = tc.TerminateWorkflow(context.Background(), runnerapi.PoolWorkflowID("sched-a"), "", "test over")
	}()
	require.NoError(t, tc.ScheduleClient().GetHandle(ctx, "runner-prewarm:sched-a:0").Trigger(ctx, client.ScheduleTriggerOptions{}))
	require.Eventually(t, func() bool {
		v, err := tc.QueryWorkflow(ctx, runnerapi.PoolWorkflowID("sched-a"), "", "prewarms")
		if err != nil {
			return false
		}
		var got []int
		return v.Get(&got) == nil && len(got) == 1 && got[0] == 3
	}, 20*time.Second, 100*time.Millisecond)

	// A pool removed from the configuration loses its schedules.
	require.NoError(t, workflows.EnsurePoolSchedules(ctx, tc, &pools.Config{Pools: cfg.Pools[:1]}))
	_, err = tc.ScheduleClient().GetHandle(ctx, "runner-keepalive:sched-b").Describe(ctx)
	assert.Error(t, err)
	require.NoError(t, workflows.EnsurePoolSchedules(ctx, tc, &pools.Config{}))
}
