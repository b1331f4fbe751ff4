package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drydock-dev/drydock/workflows"
)

// A signal that arrives while a workflow task is running is recorded after
// that task completes; it is handled by the next task, and the burst's
// stages are measured from its own signal to that task, sticky or not.
func TestHistoryReaderTakesEachSignalToTheTaskThatHandledIt(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	at := func(ms int) *timestamppb.Timestamp {
		return timestamppb.New(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	signal := func(ms int, delivery string) *historypb.HistoryEvent {
		in, err := converter.GetDefaultDataConverter().ToPayloads(workflows.PullRequestEvent{DeliveryID: delivery})
		require.NoError(t, err)
		return &historypb.HistoryEvent{EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, EventTime: at(ms),
			Attributes: &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
				SignalName: workflows.SignalPullRequest, Input: in}}}
	}
	scheduled := func(ms int, kind enumspb.TaskQueueKind) *historypb.HistoryEvent {
		return &historypb.HistoryEvent{EventType: enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventTime: at(ms),
			Attributes: &historypb.HistoryEvent_WorkflowTaskScheduledEventAttributes{WorkflowTaskScheduledEventAttributes: &historypb.WorkflowTaskScheduledEventAttributes{
				TaskQueue: &taskqueuepb.TaskQueue{Name: "q", Kind: kind}}}}
	}
	plain := func(ms int, typ enumspb.EventType) *historypb.HistoryEvent {
		return &historypb.HistoryEvent{EventType: typ, EventTime: at(ms)}
	}
	other := &historypb.HistoryEvent{EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, EventTime: at(0),
		Attributes: &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
			SignalName: "something-else", Input: &commonpb.Payloads{}}}}
	history := []*historypb.HistoryEvent{
		other,
		signal(10, "a"), scheduled(10, enumspb.TASK_QUEUE_KIND_STICKY),
		plain(14, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED), plain(20, enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
		// b came while a's task ran: recorded after it completed.
		signal(21, "b"), scheduled(21, enumspb.TASK_QUEUE_KIND_NORMAL),
		plain(60, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED), plain(90, enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
		signal(100, "c"), // not handled yet
	}
	handled := map[string]syncHandled{}
	var r historyReader
	for _, ev := range history {
		require.NoError(t, r.event(ev, handled))
	}
	require.Len(t, handled, 2, "c's task has not completed")
	assert.Equal(t, syncHandled{signaled: t0.Add(10 * time.Millisecond), started: t0.Add(14 * time.Millisecond), done: t0.Add(20 * time.Millisecond), sticky: true}, handled["a"])
	assert.Equal(t, syncHandled{signaled: t0.Add(21 * time.Millisecond), started: t0.Add(60 * time.Millisecond), done: t0.Add(90 * time.Millisecond)}, handled["b"])

	sent := []syncSent{{wid: "w", delivery: "a", sent: t0, ok: true}, {wid: "w", delivery: "b", sent: t0.Add(5 * time.Millisecond), ok: true},
		{wid: "w", delivery: "c", sent: t0.Add(95 * time.Millisecond), ok: true}, {wid: "w", delivery: "refused", ok: false}}
	st := stagesOf(sent, handled)
	assert.Equal(t, []time.Duration{10 * time.Millisecond, 16 * time.Millisecond}, st.intake.Values())
	assert.Equal(t, []time.Duration{4 * time.Millisecond, 39 * time.Millisecond}, st.queue.Values())
	assert.Equal(t, []time.Duration{6 * time.Millisecond, 30 * time.Millisecond}, st.run.Values())
	assert.Equal(t, 1, st.unsticky, "b's task went to the shared queue")
	lat, bad := syncLatencies(sent, handled, 1)
	assert.Equal(t, []time.Duration{20 * time.Millisecond, 85 * time.Millisecond}, lat.Values())
	assert.Equal(t, 2, bad, "one refused, c never handled")
}

// The host's CPU counters move forward and steal is part of busy.
func TestHostCPUReadsProcStat(t *testing.T) {
	busy, steal := hostCPU()
	assert.Positive(t, busy)
	assert.GreaterOrEqual(t, busy, steal)
}

// The processes that used the most CPU between two readings, by name,
// without those already counted; a reused pid counts from zero.
func TestTopOthersRanksByName(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	before := map[int]procEntry{
		1: {comm: "init", own: ms(10), reaped: ms(100)},
		2: {comm: "app", own: ms(5)},
		3: {comm: "app", own: ms(5)},
		4: {comm: "temporal", own: ms(1000)},
		5: {comm: "old", own: ms(500)},
	}
	after := map[int]procEntry{
		1: {comm: "init", own: ms(10), reaped: ms(400)},
		2: {comm: "app", own: ms(105)},
		3: {comm: "app", own: ms(55)},
		4: {comm: "temporal", own: ms(9000)},
		5: {comm: "new", own: ms(20)},
		6: {comm: "app", own: ms(40)},
	}
	got := topOthers(before, after, map[int]bool{4: true}, 3)
	assert.Equal(t, "[init reaped=300ms app own=190ms new own=20ms]", fmt.Sprint(got))
	c := burstCPU{wall: time.Second, others: got}
	assert.Equal(t, "; busiest other processes: init reaped 0.30, app own 0.19, new own 0.02", c.othersNote())
}
