package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// A job queued on a pool with an idle, asleep machine has that machine's
// wake call out within its first workflow task: the acquire (an Update to
// the pool) and the wake run as local activities of that task, with no
// activity task in between; so does the runner's start, right after the
// wake. The history shows it: the first workflow task completed records
// the AcquireRunnerNow, WakeMachine and StartJITRunner markers, and no
// AcquireRunner activity is ever scheduled.
func TestRunnerJobWakesItsMachineInItsFirstWorkflowTask(t *testing.T) {
	s := newStackWith(t, func(s *stack) string { return poolJSON(t, s, "quick", 1, "", "") })
	ids := nextJobIDs(2)
	s.keepHistories(map[string]runMatcher{
		"runner-job-fast-dispatch":      withID(runnerapi.JobWorkflowID(ids[1])),
		"runner-job-queued-then-leased": withID(runnerapi.JobWorkflowID(ids[0])),
	})
	for _, id := range ids {
		s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: id, Labels: jobLabels, Duration: 200 * time.Millisecond})
	}
	// The first job starts the pool, which provisions its machine.
	require.Equal(t, http.StatusAccepted, s.queueJob(t, ids[0], fmt.Sprintf("queued-%d", ids[0])))
	s.waitJobs(t, ids[:1])
	require.Eventually(t, func() bool {
		st := s.emu.Stats()
		return len(st.Machines) == 1 && st.Machines[0].Phase == dedalus.PhaseSleeping
	}, 30*time.Second, 100*time.Millisecond, "the pool's machine is idle and asleep")
	wakes := s.emu.Stats().Wakes

	require.Equal(t, http.StatusAccepted, s.queueJob(t, ids[1], fmt.Sprintf("queued-%d", ids[1])))
	s.waitJobs(t, ids[1:])
	assert.Equal(t, wakes+1, s.emu.Stats().Wakes, "one wake for the second job")

	events := jobHistory(t, s, ids[1])
	firstTask := -1
	for i, e := range events {
		if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			firstTask = i
			break
		}
	}
	require.GreaterOrEqual(t, firstTask, 0)
	var inFirst []string
	for _, e := range events[firstTask+1:] {
		if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED {
			break
		}
		if m := e.GetMarkerRecordedEventAttributes(); m.GetMarkerName() == "LocalActivity" {
			inFirst = append(inFirst, localActivityType(t, m))
		}
	}
	assert.Equal(t, []string{"PoolSettings", "AcquireRunnerNow", "WakeMachine", "StartJITRunner"}, inFirst,
		"the first workflow task leases and wakes the machine, and starts its runner")
	for _, e := range events {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			assert.NotEqual(t, "AcquireRunner", a.GetActivityType().GetName(), "no acquire activity")
		}
	}
}

func jobHistory(t *testing.T, s *stack, id int64) []*historypb.HistoryEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := s.tc.GetWorkflowHistory(ctx, runnerapi.JobWorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		events = append(events, e)
	}
	return events
}

// localActivityType reads the activity type of a local activity's marker.
func localActivityType(t *testing.T, m *historypb.MarkerRecordedEventAttributes) string {
	t.Helper()
	data := m.GetDetails()["data"].GetPayloads()
	require.NotEmpty(t, data)
	var v struct{ ActivityType string }
	require.NoError(t, json.Unmarshal(data[0].GetData(), &v))
	return v.ActivityType
}
