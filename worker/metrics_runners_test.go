package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// listOnly is a Temporal client whose only call is ListWorkflow, answering
// pages in turn.
type listOnly struct {
	client.Client
	pages   []*workflowservice.ListWorkflowExecutionsResponse
	queries []string
}

func (l *listOnly) ListWorkflow(_ context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	l.queries = append(l.queries, req.GetQuery())
	page := l.pages[0]
	l.pages = l.pages[1:]
	return page, nil
}

func waitingJob(t *testing.T, pool string, start time.Time) *workflowpb.WorkflowExecutionInfo {
	p, err := converter.GetDefaultDataConverter().ToPayload(pool)
	require.NoError(t, err)
	return &workflowpb.WorkflowExecutionInfo{
		StartTime:        timestamppb.New(start),
		SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{"DrydockPool": p}},
	}
}

// drydock_runner_job_oldest_wait_seconds: every page of the waiting jobs is
// read, each configured pool reports its oldest (0 when none waits), and
// jobs of pools this worker does not configure are left out.
func TestOldestWaitingJobPerPool(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	l := &listOnly{pages: []*workflowservice.ListWorkflowExecutionsResponse{
		{Executions: []*workflowpb.WorkflowExecutionInfo{
			waitingJob(t, "linux", now.Add(-2*time.Minute)), waitingJob(t, "other", now.Add(-time.Hour)),
		}, NextPageToken: []byte("p2")},
		{Executions: []*workflowpb.WorkflowExecutionInfo{waitingJob(t, "linux", now.Add(-20*time.Minute))}},
	}}
	starts, err := waitingJobStarts(context.Background(), l)
	require.NoError(t, err)
	require.Len(t, l.queries, 2, "both pages")
	assert.Contains(t, l.queries[0], `WorkflowType = "RunnerJob"`)
	assert.Contains(t, l.queries[0], `DrydockPhase IN ("acquiring", "waking", "starting_runner", "waiting_for_pickup")`)
	got := oldestWaits([]string{"linux", "gpu"}, starts, now)
	assert.Equal(t, []string{"linux"}, got[0].Labels)
	assert.Equal(t, 1200.0, got[0].Value)
	assert.Equal(t, []string{"gpu"}, got[1].Labels)
	assert.Equal(t, 0.0, got[1].Value)
}
