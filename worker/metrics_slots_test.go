package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// queryOnly is a Temporal client whose only call is QueryWorkflow.
type queryOnly struct {
	client.Client
	id, query string
	answer    any
	err       error
}

func (q *queryOnly) QueryWorkflow(_ context.Context, id, _ string, query string, _ ...any) (converter.EncodedValue, error) {
	q.id, q.query = id, query
	if q.err != nil {
		return nil, q.err
	}
	p, err := converter.GetDefaultDataConverter().ToPayloads(q.answer)
	if err != nil {
		return nil, err
	}
	return client.NewValue(p), nil
}

// drydock_preview_slots reads the coordinator's state; no coordinator
// running counts nothing (not an error).
func TestPreviewSlotsMetricReadsTheCoordinator(t *testing.T) {
	q := &queryOnly{answer: slotsapi.State{
		Holders: []slotsapi.Holder{{WorkflowID: "a"}, {WorkflowID: "b"}},
		Queue:   []slotsapi.Waiter{{WorkflowID: "c"}},
	}}
	st, err := previewSlots(context.Background(), q)
	require.NoError(t, err)
	assert.Len(t, st.Holders, 2)
	assert.Len(t, st.Queue, 1)
	assert.Equal(t, slotsapi.WorkflowID, q.id)
	assert.Equal(t, slotsapi.QueryState, q.query)

	q = &queryOnly{err: serviceerror.NewNotFound("workflow not found")}
	st, err = previewSlots(context.Background(), q)
	require.NoError(t, err)
	assert.Empty(t, st.Holders)

	q = &queryOnly{err: serviceerror.NewUnavailable("down")}
	_, err = previewSlots(context.Background(), q)
	assert.ErrorContains(t, err, "preview slots")
}
