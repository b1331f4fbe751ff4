package router

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
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

	"github.com/drydock-dev/drydock/internal/testing/testenv"
	"github.com/drydock-dev/drydock/workflows"
)

var devServer *testsuite.DevServer

func TestMain(m *testing.M) { testenv.MainWithTemporal(m, &devServer) }

// Test-only signals of fakePreview.
const (
	signalFinish   = "test-finish"   // completes a preview being torn down
	signalHold     = "test-hold"     // wakes wait until signalRelease
	signalRelease  = "test-release"  // waiting wakes answer
	signalHandover = "test-handover" // the next wake hands over to a new run
	queryState     = "test-state"
	// signalVisibility sets the visibility the status query answers
	// (default public).
	signalVisibility = "test-visibility"
)

// fakePreview stands in for PreviewLifecycle with its wake and touch
// contract: wake answers the URL it was started with; destroy begins a
// teardown (wake is then rejected by its validator) that ends on
// signalFinish. After signalHold wakes wait for signalRelease; after
// signalHandover the next wake answers ErrTypePreviewHandover and the run
// continues as new, as PreviewLifecycle does.
func fakePreview(ctx workflow.Context, url string) error {
	var st fakeState
	handingOver := false
	handingOverCh := workflow.NewBufferedChannel(ctx, 1)
	if err := setFakeWake(ctx, url, &st, handingOverCh); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, queryState, func() (fakeState, error) { return st, nil }); err != nil {
		return err
	}
	vis := workflows.VisibilityPublic
	if err := workflow.SetQueryHandler(ctx, workflows.QueryStatus, func() (workflows.PreviewStatus, error) {
		return workflows.PreviewStatus{Visibility: vis}, nil
	}); err != nil {
		return err
	}
	touch := workflow.GetSignalChannel(ctx, workflows.SignalTouch)
	destroy := workflow.GetSignalChannel(ctx, workflows.SignalDestroy)
	finish := workflow.GetSignalChannel(ctx, signalFinish)
	control := func(f func()) func(workflow.ReceiveChannel, bool) {
		return func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); f() }
	}
	for done := false; !done; {
		if handingOver {
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			return workflow.NewContinueAsNewError(ctx, workflows.PreviewLifecycleName, url)
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(touch, control(func() { st.Touches++ }))
		sel.AddReceive(destroy, func(c workflow.ReceiveChannel, _ bool) {
			var req workflows.DestroyRequest
			c.Receive(ctx, &req)
			st.TornDown = true
		})
		sel.AddReceive(finish, control(func() { done = st.TornDown }))
		sel.AddReceive(workflow.GetSignalChannel(ctx, signalHold), control(func() { st.Held = true }))
		sel.AddReceive(workflow.GetSignalChannel(ctx, signalRelease), control(func() { st.Held = false }))
		sel.AddReceive(workflow.GetSignalChannel(ctx, signalHandover), control(func() { st.Handover = true }))
		sel.AddReceive(workflow.GetSignalChannel(ctx, signalVisibility), func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &vis) })
		sel.AddReceive(handingOverCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &handingOver) })
		sel.Select(ctx)
	}
	return workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
}

// setFakeWake sets fakePreview's wake Update handler, which counts the
// distinct Updates in st and, once st.Handover is set, hands over through
// handingOverCh.
func setFakeWake(ctx workflow.Context, url string, st *fakeState, handingOverCh workflow.Channel) error {
	seen := map[string]bool{}
	return workflow.SetUpdateHandlerWithOptions(ctx, workflows.UpdateWake,
		func(ctx workflow.Context) (workflows.WakeResult, error) {
			if id := workflow.GetCurrentUpdateInfo(ctx).ID; !seen[id] {
				seen[id] = true
				st.Updates++
			}
			if st.Handover {
				handingOverCh.SendAsync(true)
				return workflows.WakeResult{}, temporal.NewApplicationError("continuing as new", workflows.ErrTypePreviewHandover)
			}
			if err := workflow.Await(ctx, func() bool { return !st.Held }); err != nil {
				return workflows.WakeResult{}, err
			}
			return workflows.WakeResult{URL: url, MachineID: "dm-" + workflow.GetInfo(ctx).WorkflowExecution.ID}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func() error {
			if st.TornDown {
				return temporal.NewApplicationError("preview is being torn down", workflows.ErrTypePreviewTornDown)
			}
			return nil
		}},
	)
}

type fakeState struct {
	Touches  int
	TornDown bool
	Updates  int  // distinct wake Updates (update IDs) the run saw
	Handover bool // the next wake hands over
	Held     bool // wakes wait for signalRelease
}

func queryFake(ctx context.Context, t assert.TestingT, id string) fakeState {
	var st fakeState
	v, err := devServer.Client().QueryWorkflow(ctx, id, "", queryState)
	if assert.NoError(t, err) {
		assert.NoError(t, v.Get(&st))
	}
	return st
}

// destroyFake signals destroy and waits until the workflow has taken it in:
// an Update admitted in the same workflow task as the signal is validated
// before the workflow's loop receives the signal.
func destroyFake(ctx context.Context, t *testing.T, id string) {
	t.Helper()
	require.NoError(t, devServer.Client().SignalWorkflow(ctx, id, "", workflows.SignalDestroy, workflows.DestroyRequest{Reason: "test"}))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.True(ct, queryFake(ctx, ct, id).TornDown)
	}, 10*time.Second, 20*time.Millisecond)
}

var queueSeq, prSeq atomic.Int32

// nextPR returns a pull request number no other test (or -count run) uses,
// so that no test meets another's workflow.
func nextPR() int { return int(prSeq.Add(1)) + 100 }

// startFakeWorker runs fakePreview, registered as PreviewLifecycle, on a
// fresh task queue.
func startFakeWorker(t *testing.T) string {
	t.Helper()
	queue := fmt.Sprintf("router-test-%d", queueSeq.Add(1))
	w := worker.New(devServer.Client(), queue, worker.Options{})
	w.RegisterWorkflowWithOptions(fakePreview, workflow.RegisterOptions{Name: workflows.PreviewLifecycleName})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return queue
}

func startFakePreview(t *testing.T, queue string, tgt Target, url string) {
	t.Helper()
	_, err := devServer.Client().ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: tgt.WorkflowID(), TaskQueue: queue, WorkflowExecutionTimeout: time.Minute,
	}, workflows.PreviewLifecycleName, url)
	require.NoError(t, err)
}

func TestTemporalWaker(t *testing.T) {
	queue := startFakeWorker(t)
	c := devServer.Client()
	w := NewTemporalWaker(c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tgt := Target{"octo", "hello", nextPR()}
	id := tgt.WorkflowID()
	startFakePreview(t, queue, tgt, "http://127.0.0.1:1/app")

	res, err := w.Wake(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, workflows.WakeResult{URL: "http://127.0.0.1:1/app", MachineID: "dm-" + id}, res)

	require.NoError(t, w.Touch(ctx, id))
	require.NoError(t, w.Touch(ctx, id))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.Equal(ct, 2, queryFake(ctx, ct, id).Touches)
	}, 10*time.Second, 50*time.Millisecond)

	// Unknown workflow ID: 404.
	_, err = w.Wake(ctx, Target{"octo", "hello", 99999}.WorkflowID())
	assert.ErrorIs(t, err, ErrUnknownPreview)
	assert.NotErrorIs(t, err, ErrPreviewGone)
	t.Logf("unknown preview: %v", err)
	assert.NoError(t, w.Touch(ctx, Target{"octo", "hello", 99999}.WorkflowID()), "touching nothing is fine")

	// During teardown the validator rejects the wake: 410.
	destroyFake(ctx, t, id)
	_, err = w.Wake(ctx, id)
	assert.ErrorIs(t, err, ErrPreviewGone)
	t.Logf("tearing down: %v", err)

	// Completed: 410 too.
	require.NoError(t, c.SignalWorkflow(ctx, id, "", signalFinish, nil))
	require.NoError(t, c.GetWorkflow(ctx, id, "").Get(ctx, nil))
	_, err = w.Wake(ctx, id)
	assert.ErrorIs(t, err, ErrPreviewGone)
	assert.NotErrorIs(t, err, ErrUnknownPreview)
	t.Logf("completed: %v", err)
	assert.NoError(t, w.Touch(ctx, id), "touching a completed preview is fine")
}

// Without a worker the wake cannot complete: the caller's deadline makes it
// ErrUnavailable (503), not a 502.
func TestTemporalWakerNoWorker(t *testing.T) {
	tgt := Target{"octo", "hello", nextPR()}
	startFakePreview(t, "router-test-nobody-polls", tgt, "http://127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := NewTemporalWaker(devServer.Client()).Wake(ctx, tgt.WorkflowID())
	assert.ErrorIs(t, err, ErrUnavailable)
	t.Logf("no worker: %v", err)
	require.NoError(t, devServer.Client().TerminateWorkflow(context.Background(), tgt.WorkflowID(), "", "test done"))
}

// Temporal unreachable: ErrUnavailable.
func TestTemporalWakerUnreachable(t *testing.T) {
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1", Logger: quietLogger{}})
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = NewTemporalWaker(c).Wake(ctx, "preview:octo/hello:1")
	assert.ErrorIs(t, err, ErrUnavailable)
	t.Logf("unreachable: %v", err)
}

type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

// The whole path: HTTP request → router → wake Update through the real
// server → proxy; 404 and 410 pages for unknown and torn-down previews.
func TestRouterThroughTemporal(t *testing.T) {
	queue := startFakeWorker(t)
	c := devServer.Client()
	up := helloUpstream(t)
	live, gone := Target{"octo", "hello", nextPR()}, Target{"other-org", "site", nextPR()}
	startFakePreview(t, queue, live, up.URL)
	startFakePreview(t, queue, gone, up.URL)
	ctx := context.Background()
	destroyFake(ctx, t, gone.WorkflowID())
	require.NoError(t, c.SignalWorkflow(ctx, gone.WorkflowID(), "", signalFinish, nil))
	require.NoError(t, c.GetWorkflow(ctx, gone.WorkflowID(), "").Get(ctx, nil))

	rt, srv := newRouter(t, NewTemporalWaker(c), func(o *Options) { o.WakeTimeout = 10 * time.Second })

	liveHost := fmt.Sprintf("pr-%d.preview.localhost", live.Number)
	resp, body := get(t, srv, liveHost, "/page")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "hello /page", body)

	resp, body = get(t, srv, fmt.Sprintf("pr-%d--other-org--site.preview.localhost", gone.Number), "/")
	assert.Equal(t, http.StatusGone, resp.StatusCode)
	assert.Contains(t, body, gone.String())

	resp, _ = get(t, srv, "pr-99999.preview.localhost", "/")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	// Touches reach the workflow.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.Equal(ct, 1, queryFake(ctx, ct, live.WorkflowID()).Touches)
	}, 10*time.Second, 50*time.Millisecond)

	// Being torn down: 410 as well.
	destroyFake(ctx, t, live.WorkflowID())
	rt.previews[live].markCold()
	resp, body = get(t, srv, liveHost, "/page")
	assert.Equal(t, http.StatusGone, resp.StatusCode)
	assert.Contains(t, body, live.String()+" was torn down")
	require.NoError(t, c.SignalWorkflow(ctx, live.WorkflowID(), "", signalFinish, nil))
	require.NoError(t, c.GetWorkflow(ctx, live.WorkflowID(), "").Get(ctx, nil))
}

// A wake whose answer the router lost (its flight timed out while the
// preview was busy) is sent again under the same update ID: the retry
// attaches to the Update in flight instead of adding one per flight, and
// gets its answer once there is one. An answered wake's ID is not reused.
func TestLostWakeIsResentUnderTheSameUpdateID(t *testing.T) {
	queue := startFakeWorker(t)
	c := devServer.Client()
	tgt := Target{"octo", "hello", nextPR()}
	id := tgt.WorkflowID()
	startFakePreview(t, queue, tgt, "http://127.0.0.1:1/app")
	ctx := context.Background()
	require.NoError(t, c.SignalWorkflow(ctx, id, "", signalHold, nil))
	// The hold must be in force before the first wake: a wake delivered in
	// the same workflow task as the signal could run before the signal is
	// read, and be answered at once.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.True(ct, queryFake(ctx, ct, id).Held)
	}, 10*time.Second, 20*time.Millisecond)

	rt, _ := newRouter(t, NewTemporalWaker(c), func(o *Options) { o.WakeTimeout = 250 * time.Millisecond })
	p := rt.lookup(tgt, rt.clock())
	for range 2 {
		_, err := rt.doWake(p)
		require.ErrorIs(t, err, ErrUnavailable, "the flight gives up while the wake waits")
	}
	assert.Equal(t, 1, queryFake(ctx, t, id).Updates, "two flights, one Update")

	require.NoError(t, c.SignalWorkflow(ctx, id, "", signalRelease, nil))
	u, err := rt.doWake(p)
	require.NoError(t, err, "the retry gets the Update's answer")
	assert.Equal(t, "http://127.0.0.1:1/app", u.(*upstream).target.String())
	assert.Equal(t, 1, queryFake(ctx, t, id).Updates)

	p.markCold()
	_, err = rt.doWake(p)
	require.NoError(t, err)
	assert.Equal(t, 2, queryFake(ctx, t, id).Updates, "a wake after an answer is a new Update")
	require.NoError(t, c.TerminateWorkflow(ctx, id, "", "test done"))
}

// A wake answered "continuing as new" is retried at once and answered by
// the next run: the router never shows it.
func TestWakeDuringHandoverIsRetried(t *testing.T) {
	queue := startFakeWorker(t)
	c := devServer.Client()
	tgt := Target{"octo", "hello", nextPR()}
	id := tgt.WorkflowID()
	startFakePreview(t, queue, tgt, "http://127.0.0.1:1/app")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, err := c.DescribeWorkflowExecution(ctx, id, "")
	require.NoError(t, err)
	require.NoError(t, c.SignalWorkflow(ctx, id, "", signalHandover, nil))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.True(ct, queryFake(ctx, ct, id).Handover)
	}, 10*time.Second, 20*time.Millisecond)

	res, err := NewTemporalWaker(c).Wake(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:1/app", res.URL)
	now, err := c.DescribeWorkflowExecution(ctx, id, "")
	require.NoError(t, err)
	assert.NotEqual(t, first.WorkflowExecutionInfo.Execution.RunId, now.WorkflowExecutionInfo.Execution.RunId, "answered by the next run")
	require.NoError(t, c.TerminateWorkflow(ctx, id, "", "test done"))
}

// What PreviewLifecycle answers maps to the router's errors.
func TestClassifyWorkflowAnswers(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want error
	}{
		{temporal.NewApplicationError("deploying", workflows.ErrTypePreviewNotReady), ErrNotReady},
		{temporal.NewApplicationError("going", workflows.ErrTypePreviewTornDown), ErrPreviewGone},
		{serviceerror.NewNotFound("workflow update was aborted by closing workflow"), ErrPreviewGone},
		{serviceerror.NewNotFound("workflow not found for ID: x"), ErrUnknownPreview},
		{serviceerror.NewResourceExhausted(0, "workflow is closing"), ErrUnavailable},
	} {
		assert.ErrorIs(t, classify(ctx, "preview:o/r:1", tc.err), tc.want, "%v", tc.err)
	}
	err := classify(ctx, "preview:o/r:1", temporal.NewApplicationError("failed", workflows.ErrTypePreviewFailed))
	for _, e := range []error{ErrNotReady, ErrPreviewGone, ErrUnknownPreview, ErrUnavailable} {
		assert.NotErrorIs(t, err, e)
	}
}
