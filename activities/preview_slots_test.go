package activities_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// A quota refusal of a create is a non-retryable DedalusQuotaExceeded
// error after one request (the workflow waits and says so on the PR); a
// rate limit is still retried.
func TestCreateMachineQuotaIsNotRetried(t *testing.T) {
	for _, c := range []struct {
		name, body string
		status     int
		wantType   string
		retryable  bool
	}{
		{"quota", `{"error_code":"QUOTA_EXCEEDED","message":"machine quota reached for this organization","retryable":false}`, 403, activities.ErrTypeQuotaExceeded, false},
		{"limit", `{"error_code":"MACHINE_LIMIT_EXCEEDED","message":"at most 5 machines","retryable":true,"retry_after_ms":60000}`, 429, activities.ErrTypeQuotaExceeded, false},
		{"rate limit", `{"error_code":"RATE_LIMITED","message":"mutation rate limit exceeded","retryable":true,"retry_after_ms":84}`, 429, "DedalusUnavailable", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			dc, err := dedalus.New(dedalus.Options{BaseURL: srv.URL, APIKey: "k", MinBackoff: time.Millisecond})
			require.NoError(t, err)
			var s testsuite.WorkflowTestSuite
			env := s.NewTestActivityEnvironment()
			env.RegisterActivity(&activities.Machines{Client: dc})
			_, err = env.ExecuteActivity(machines.CreateMachine, activities.MachineSpec{VCPU: 1, MemoryMiB: 512, StorageGiB: 5})
			var ae *temporal.ApplicationError
			require.True(t, errors.As(err, &ae), "%v", err)
			assert.Equal(t, c.wantType, ae.Type())
			assert.Equal(t, c.retryable, !ae.NonRetryable())
			if !c.retryable {
				assert.EqualValues(t, 1, calls.Load(), "one request: nothing retried")
			}
		})
	}
}

func TestPreviewCapsCheckMachine(t *testing.T) {
	caps := activities.PreviewCaps{MaxVCPU: 2, MaxMemoryMiB: 4096, MaxStorageGiB: 20}
	assert.Empty(t, caps.CheckMachine(2, 4096, 20), "the caps themselves are allowed")
	assert.Empty(t, activities.PreviewCaps{}.CheckMachine(64, 1<<20, 1000), "0: unlimited")
	msg := caps.CheckMachine(4, 4096, 50)
	assert.Contains(t, msg, "4 vCPU (PREVIEW_MAX_VCPU=2)")
	assert.Contains(t, msg, "50 GiB of storage (PREVIEW_MAX_STORAGE_GIB=20)")
	assert.NotContains(t, msg, "memory")
	assert.Contains(t, msg, "no machine was created")
}

// The coordinator's liveness check: a terminated or unknown preview is
// gone; a running one keeps its slot, unless it was counted from
// visibility (seeded) and has no machine any more.
func TestCheckSlotHolders(t *testing.T) {
	tc := devServer.Client()
	ctx := context.Background()
	start := func(id string) {
		// Not a PreviewLifecycle: the reconciler tests share this server
		// and query every running preview.
		_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "no-worker-" + t.Name()}, "SlotHolderDouble")
		require.NoError(t, err)
		t.Cleanup(func() { _ = tc.TerminateWorkflow(ctx, id, "", "test over") })
	}
	running, killed, seeded := "preview:slots/check:1", "preview:slots/check:2", "preview:slots/check:3"
	for _, id := range []string{running, killed, seeded} {
		start(id)
	}
	require.NoError(t, tc.TerminateWorkflow(ctx, killed, "", "an operator terminated it"))
	a := &activities.PreviewSlots{Temporal: tc, TaskQueue: "q"}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	v, err := env.ExecuteActivity(a.CheckSlotHolders, slotsapi.CheckInput{
		Holders: []slotsapi.Holder{{WorkflowID: running}, {WorkflowID: killed}, {WorkflowID: seeded, Seeded: true}},
		Waiters: []string{"preview:slots/never:9"},
	})
	require.NoError(t, err)
	var res slotsapi.CheckResult
	require.NoError(t, v.Get(&res))
	assert.ElementsMatch(t, []string{killed, seeded, "preview:slots/never:9"}, res.Gone)
}

// RequestSlot starts the coordinator with its request (Update-with-start)
// and gets its answer at once; a repeated request of the same preview is
// answered where it stands and counts once.
func TestRequestSlotThroughTheCoordinator(t *testing.T) {
	tc := devServer.Client()
	queue := "slots-" + t.Name()
	w := worker.New(tc, queue, worker.Options{})
	workflows.Register(w)
	w.RegisterActivity(&activities.Previews{Caps: activities.PreviewCaps{Slots: slotsapi.Caps{MaxOpenPerRepo: 1}}})
	slots := &activities.PreviewSlots{Temporal: tc, TaskQueue: queue}
	w.RegisterActivity(slots)
	require.NoError(t, w.Start())
	t.Cleanup(func() {
		_ = tc.TerminateWorkflow(context.Background(), slotsapi.WorkflowID, "", "test over")
		w.Stop()
	})

	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(slots)
	ask := func(n int) slotsapi.Answer {
		t.Helper()
		v, err := env.ExecuteActivity(slots.RequestSlot, slotsapi.Request{
			WorkflowID: fmt.Sprintf("preview:slots-e2e/app:%d", n), Owner: "slots-e2e", Repo: "app", Number: n,
		})
		require.NoError(t, err)
		var ans slotsapi.Answer
		require.NoError(t, v.Get(&ans))
		return ans
	}
	assert.True(t, ask(1).Granted, "the coordinator started with the request")
	again := ask(1)
	assert.True(t, again.Granted)
	assert.Equal(t, 1, again.RepoOpen, "a repeated request counts once")
	q := ask(2)
	assert.False(t, q.Granted)
	assert.Equal(t, 1, q.Position)
	assert.Equal(t, "queued: 1 previews open in slots-e2e/app, limit 1 per repository", q.Reason)

	_, err := env.ExecuteActivity(slots.RequestSlot, slotsapi.Request{Owner: "slots-e2e"})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.Equal(t, activities.ErrTypeInvalidArgument, ae.Type(), "an invalid request is refused for good")
}
