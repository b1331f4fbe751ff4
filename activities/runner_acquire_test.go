package activities_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// gatedPool stands in for the RunnerPool workflow: it leases a machine to
// each acquire once it is opened (signal "open"), and counts the acquire
// handlers it ran (query "handlers").
func gatedPool(ctx workflow.Context, in runnerapi.PoolInput) error {
	open, handlers := false, 0
	if err := workflow.SetQueryHandler(ctx, "handlers", func() (int, error) { return handlers, nil }); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandler(ctx, runnerapi.UpdateAcquire, func(ctx workflow.Context, req runnerapi.AcquireRequest) (runnerapi.Lease, error) {
		handlers++
		if err := workflow.Await(ctx, func() bool { return open }); err != nil {
			return runnerapi.Lease{}, err
		}
		return runnerapi.Lease{MachineID: "dm-gated", RunnerName: runnerapi.RunnerName(in.Pool.Name, req.JobID, req.Attempt)}, nil
	}); err != nil {
		return err
	}
	workflow.GetSignalChannel(ctx, "open").Receive(ctx, nil)
	open = true
	return workflow.Await(ctx, func() bool { return false })
}

// acquireRig runs a stand-in pool workflow on its own task queue.
func acquireRig(t *testing.T, pool any) (*activities.Runners, *testsuite.TestActivityEnvironment, pools.Pool) {
	t.Helper()
	queue := "acquire-" + t.Name()
	w := worker.New(devServer.Client(), queue, worker.Options{})
	w.RegisterWorkflowWithOptions(pool, workflow.RegisterOptions{Name: runnerapi.RunnerPoolName})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	p := testPool()
	p.Name = fmt.Sprintf("acq-%d", time.Now().UnixNano())
	a := &activities.Runners{Pools: &pools.Config{Pools: []pools.Pool{p}}, Temporal: devServer.Client(), TaskQueue: queue}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	t.Cleanup(func() {
		_ = devServer.Client().TerminateWorkflow(context.Background(), runnerapi.PoolWorkflowID(p.Name), "", "test done")
	})
	return a, env, p
}

func acquireNow(t *testing.T, env *testsuite.TestActivityEnvironment, a *activities.Runners, in activities.AcquireInput) activities.AcquireAnswer {
	t.Helper()
	v, err := env.ExecuteActivity(a.AcquireRunnerNow, in)
	require.NoError(t, err)
	var ans activities.AcquireAnswer
	require.NoError(t, v.Get(&ans))
	return ans
}

// A pool with a machine to hand answers the fast path at once.
func TestRunnerAcquireRunnerNowLeasesAtOnce(t *testing.T) {
	a, env, p := acquireRig(t, gatedPool)
	in := activities.AcquireInput{Pool: p.Name, Request: runnerapi.AcquireRequest{JobID: 7, Attempt: 1}}
	// Start the pool and open it first: its first workflow task is not what is timed here.
	ans := acquireNow(t, env, a, activities.AcquireInput{Pool: p.Name, Request: runnerapi.AcquireRequest{JobID: 1, Attempt: 1}})
	require.True(t, ans.Queued)
	require.NoError(t, devServer.Client().SignalWorkflow(context.Background(), runnerapi.PoolWorkflowID(p.Name), "", "open", nil))

	ans = acquireNow(t, env, a, in)
	assert.Equal(t, activities.AcquireAnswer{Lease: runnerapi.Lease{MachineID: "dm-gated", RunnerName: runnerapi.RunnerName(p.Name, 7, 1)}}, ans)
}

// A pool that has no machine yet leaves the request queued: the fast path
// answers Queued, and the ordinary activity gets the lease of the same
// request (one acquire handler ran in the pool, not two).
func TestRunnerAcquireRunnerNowQueuesThenTheActivityReattaches(t *testing.T) {
	a, env, p := acquireRig(t, gatedPool)
	in := activities.AcquireInput{Pool: p.Name, Request: runnerapi.AcquireRequest{JobID: 9, Attempt: 2}}
	began := time.Now()
	ans := acquireNow(t, env, a, in)
	assert.True(t, ans.Queued, "no machine at once: queued")
	assert.Contains(t, ans.Why, "no machine within")
	// (The server may end the wait a moment before the client's timer.)
	assert.GreaterOrEqual(t, time.Since(began), activities.AcquireNowWait-50*time.Millisecond, "it waited for the pool")

	require.NoError(t, devServer.Client().SignalWorkflow(context.Background(), runnerapi.PoolWorkflowID(p.Name), "", "open", nil))
	v, err := env.ExecuteActivity(a.AcquireRunner, in)
	require.NoError(t, err)
	var lease runnerapi.Lease
	require.NoError(t, v.Get(&lease))
	assert.Equal(t, runnerapi.Lease{MachineID: "dm-gated", RunnerName: runnerapi.RunnerName(p.Name, 9, 2)}, lease)

	q, err := devServer.Client().QueryWorkflow(context.Background(), runnerapi.PoolWorkflowID(p.Name), "", "handlers")
	require.NoError(t, err)
	var handlers int
	require.NoError(t, q.Get(&handlers))
	assert.Equal(t, 1, handlers, "the activity re-attached to the queued request")
}

// A pool continuing as new is no answer: queued, for the activity to follow.
func TestRunnerAcquireRunnerNowQueuesWhileThePoolMoves(t *testing.T) {
	a, env, p := acquireRig(t, movingPool)
	ans := acquireNow(t, env, a, activities.AcquireInput{Pool: p.Name, Request: runnerapi.AcquireRequest{JobID: 3, Attempt: 1}})
	assert.True(t, ans.Queued)
	assert.Contains(t, ans.Why, "continuing as new")
}

// Bad input is refused as AcquireRunner refuses it.
func TestRunnerAcquireRunnerNowValidatesInput(t *testing.T) {
	a := &activities.Runners{Pools: &pools.Config{Pools: []pools.Pool{testPool()}}, Temporal: devServer.Client(), TaskQueue: "drydock-test"}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	_, err := env.ExecuteActivity(a.AcquireRunnerNow, activities.AcquireInput{Pool: "nope", Request: runnerapi.AcquireRequest{JobID: 1, Attempt: 1}})
	assert.Equal(t, activities.ErrTypeUnknownPool, appError(t, err).Type())
	_, err = env.ExecuteActivity(a.AcquireRunnerNow, activities.AcquireInput{Pool: "ci", Request: runnerapi.AcquireRequest{Attempt: 1}})
	assert.Equal(t, runnerapi.ErrTypeInvalidAcquire, appError(t, err).Type())
}

// movingPool stands in for the RunnerPool workflow: its first run answers
// every acquire with PoolContinuingAsNew and continues as new; the next run
// leases a machine.
func movingPool(ctx workflow.Context, in runnerapi.PoolInput) error {
	moving := false
	if err := workflow.SetUpdateHandler(ctx, runnerapi.UpdateAcquire, func(ctx workflow.Context, req runnerapi.AcquireRequest) (runnerapi.Lease, error) {
		if in.Carry == nil {
			moving = true
			return runnerapi.Lease{}, temporal.NewApplicationError("pool continuing as new", runnerapi.ErrTypePoolContinuingAsNew)
		}
		return runnerapi.Lease{MachineID: "dm-fake", RunnerName: runnerapi.RunnerName(in.Pool.Name, req.JobID, req.Attempt)}, nil
	}); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return moving }); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	return workflow.NewContinueAsNewError(ctx, runnerapi.RunnerPoolName, runnerapi.PoolInput{Pool: in.Pool, Carry: &runnerapi.PoolCarry{}})
}

// AcquireRunner starts the pool with update-with-start and follows it across
// continue-as-new with the same update ID.
func TestRunnerAcquireRunnerFollowsPoolAcrossContinueAsNew(t *testing.T) {
	a, env, p := acquireRig(t, movingPool)
	in := activities.AcquireInput{Pool: p.Name, Request: runnerapi.AcquireRequest{JobID: 31, Attempt: 2}}
	for range 2 { // the second call is a retried activity: the same update, the same lease
		v, err := env.ExecuteActivity(a.AcquireRunner, in)
		require.NoError(t, err)
		var lease runnerapi.Lease
		require.NoError(t, v.Get(&lease))
		assert.Equal(t, runnerapi.Lease{MachineID: "dm-fake", RunnerName: runnerapi.RunnerName(p.Name, 31, 2)}, lease)
	}
	desc, err := devServer.Client().DescribeWorkflowExecution(context.Background(), runnerapi.PoolWorkflowID(p.Name), "")
	require.NoError(t, err)
	assert.NotEqual(t, desc.WorkflowExecutionInfo.GetFirstRunId(), desc.WorkflowExecutionInfo.GetExecution().GetRunId(), "the pool continued as new once")
}

// AcquireRunner runs end to end in the workflow tests; here, its refusals.
func TestRunnerAcquireRunnerValidatesInput(t *testing.T) {
	a := &activities.Runners{Pools: &pools.Config{Pools: []pools.Pool{testPool()}}, Temporal: devServer.Client(), TaskQueue: "drydock-test"}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)

	_, err := env.ExecuteActivity(a.AcquireRunner, activities.AcquireInput{Pool: "nope", Request: runnerapi.AcquireRequest{JobID: 1, Attempt: 1}})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeUnknownPool, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.Contains(t, ae.Error(), `unknown runner pool "nope"`)

	_, err = env.ExecuteActivity(a.AcquireRunner, activities.AcquireInput{Pool: "ci", Request: runnerapi.AcquireRequest{JobID: 1}})
	ae = appError(t, err)
	assert.Equal(t, runnerapi.ErrTypeInvalidAcquire, ae.Type())
	assert.True(t, ae.NonRetryable())

	noClient := &activities.Runners{Pools: a.Pools}
	env = s.NewTestActivityEnvironment()
	env.RegisterActivity(noClient)
	_, err = env.ExecuteActivity(noClient.AcquireRunner, activities.AcquireInput{Pool: "ci", Request: runnerapi.AcquireRequest{JobID: 1, Attempt: 1}})
	ae = appError(t, err)
	assert.Equal(t, activities.ErrTypeInvalidArgument, ae.Type())
}

// stalledUpdates answers every Update with err, at once.
type stalledUpdates struct {
	client.Client
	err error
}

func (c stalledUpdates) UpdateWorkflow(context.Context, client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	return nil, c.err
}

// The server enforces the wait's deadline too, and may reset the Update's
// stream a moment before the client's own timer fires: that is still the
// wait running out (the request queued), not an error to report. Other
// errors are reported as they are.
func TestRunnerAcquireRunnerNowTakesAServerSideTimeoutForTheWait(t *testing.T) {
	a, env, p := acquireRig(t, gatedPool)
	in := activities.AcquireInput{Pool: p.Name, Request: runnerapi.AcquireRequest{JobID: 3, Attempt: 1}}
	reset := status.Error(codes.Canceled, "stream terminated by RST_STREAM with error code: CANCEL")
	a.Temporal = stalledUpdates{Client: devServer.Client(), err: client.NewWorkflowUpdateServiceTimeoutOrCanceledError(reset)}
	ans := acquireNow(t, env, a, in)
	assert.True(t, ans.Queued)
	assert.Equal(t, fmt.Sprintf("no machine within %s: the request waits in the pool's queue", activities.AcquireNowWait), ans.Why)

	a.Temporal = stalledUpdates{Client: devServer.Client(), err: serviceerror.NewUnavailable("frontend restarting")}
	ans = acquireNow(t, env, a, in)
	assert.True(t, ans.Queued)
	assert.Equal(t, "frontend restarting", ans.Why)
}
