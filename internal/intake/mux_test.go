package intake_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/intake"
)

func TestMuxRoutesByEventName(t *testing.T) {
	var got []string
	mux := intake.NewMux()
	mux.Handle("workflow_job", intake.RouterFunc(func(_ context.Context, ev intake.Event) (intake.Result, error) {
		got = append(got, ev.Name+"/"+ev.Action)
		return intake.Result{Status: http.StatusAccepted, Reason: "queued"}, nil
	}))
	res, err := mux.Route(context.Background(), intake.Event{Name: "workflow_job", Action: "queued"})
	require.NoError(t, err)
	assert.Equal(t, intake.Result{Status: http.StatusAccepted, Reason: "queued"}, res)
	assert.Equal(t, []string{"workflow_job/queued"}, got)

	res, err = mux.Route(context.Background(), intake.Event{Name: "ping"})
	require.NoError(t, err)
	assert.Equal(t, intake.Result{Status: http.StatusOK, Reason: "pong", Code: "ping"}, res)
	res, err = mux.Route(context.Background(), intake.Event{Name: "issues", Action: "opened"})
	require.NoError(t, err)
	assert.Equal(t, intake.Result{Status: http.StatusOK, Reason: `event "issues" action "opened" is not handled by Drydock`, Code: "event_not_handled"}, res)

	assert.Panics(t, func() { mux.Handle("workflow_job", intake.Acknowledge{}) }, "second route")
	assert.Panics(t, func() { mux.Handle("", intake.Acknowledge{}) })
	assert.Panics(t, func() { mux.Handle("x", nil) })
}

func TestRecentDeliveriesEvictsLeastRecentlyUsed(t *testing.T) {
	d := intake.NewRecentDeliveries(3)
	d.Add("a", "wa")
	d.Add("b", "wb")
	d.Add("c", "wc")
	_, ok := d.Get("a") // a is now the most recently used
	assert.True(t, ok)
	d.Add("d", "wd") // evicts b
	_, ok = d.Get("b")
	assert.False(t, ok)
	for _, id := range []string{"a", "c", "d"} {
		w, ok := d.Get(id)
		assert.True(t, ok, id)
		assert.Equal(t, "w"+id, w)
	}
	assert.Equal(t, 3, d.Len())
	assert.Equal(t, 1, func() int { d := intake.NewRecentDeliveries(0); d.Add("x", ""); d.Add("y", ""); return d.Len() }())
}

func TestDedupeIsSafeConcurrently(t *testing.T) {
	var mu sync.Mutex
	routed := map[string]int{}
	next := intake.RouterFunc(func(_ context.Context, ev intake.Event) (intake.Result, error) {
		mu.Lock()
		routed[ev.DeliveryID]++
		mu.Unlock()
		return intake.Result{Status: http.StatusAccepted, WorkflowID: "w", Accepted: true}, nil
	})
	r := intake.Dedupe(next, intake.NewRecentDeliveries(50))
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			_, err := r.Route(context.Background(), intake.Event{Name: "pull_request", DeliveryID: fmt.Sprint(i % 100)})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	mu.Lock()
	assert.Len(t, routed, 100, "every delivery ID was routed at least once")
	mu.Unlock()
	for range 2 {
		_, err := r.Route(context.Background(), intake.Event{Name: "pull_request", DeliveryID: "fresh"})
		require.NoError(t, err)
	}
	res, err := r.Route(context.Background(), intake.Event{Name: "pull_request", DeliveryID: "fresh"})
	require.NoError(t, err)
	assert.Equal(t, intake.Result{Status: http.StatusOK, Reason: "duplicate delivery", WorkflowID: "w", Code: "duplicate"}, res)
	mu.Lock()
	assert.Equal(t, 1, routed["fresh"])
	mu.Unlock()
}
