package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// RecordHistoriesEnv names the directory the end-to-end tests write the
// histories of their workflows to (`make record-histories` sets it to
// workflows/testdata/histories, which workflows/replay_test.go replays).
const RecordHistoriesEnv = "DRYDOCK_RECORD_HISTORIES"

// runMatcher picks the workflow run a recorded history file holds.
type runMatcher func(*workflowpb.WorkflowExecutionInfo) bool

// withID matches the run of one workflow ID (the first run, should it have
// continued as new).
func withID(id string) runMatcher {
	return func(e *workflowpb.WorkflowExecutionInfo) bool { return e.GetExecution().GetWorkflowId() == id }
}

// withIDPrefix matches a run whose ID begins with prefix (Schedules append
// the start time to the IDs of the runs they start).
func withIDPrefix(prefix string) runMatcher {
	return func(e *workflowpb.WorkflowExecutionInfo) bool {
		return strings.HasPrefix(e.GetExecution().GetWorkflowId(), prefix)
	}
}

// keepHistories is called by a test before it starts its first workflow.
// When the test ends (before its stack is torn down) it ends the runner
// pools the test started (entity workflows that would run forever), then
// fetches the history of every workflow run started during the test,
// replays each against this tree's workflow code (so that nondeterminism,
// say a range over a map, fails the run that produced it), and, when
// DRYDOCK_RECORD_HISTORIES names a directory and the test passed, writes
// the runs named in record there as <name>.json.
//
// filter narrows the runs considered with a visibility query ("" for all):
// a test that runs stand-ins under Drydock's workflow names must exclude them.
func keepHistories(t *testing.T, tc client.Client, filter string, record map[string]runMatcher) {
	t.Helper()
	since := time.Now()
	t.Cleanup(func() { checkHistories(t, tc, since, filter, record) })
}

func (s *stack) keepHistories(record map[string]runMatcher) {
	s.t.Helper()
	keepHistories(s.t, s.tc, "", record)
}

func checkHistories(t *testing.T, tc client.Client, since time.Time, filter string, record map[string]runMatcher) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	terminatePools(ctx, t, tc, since, filter)

	// The runs to record must be closed (a pool's provisions finish being
	// cancelled after it was terminated) and visible.
	runs, chosen := awaitRecordedRuns(t, tc, since, filter, record)

	dir := os.Getenv(RecordHistoriesEnv)
	replayer := newReplayer()
	replayed := 0
	for _, r := range runs {
		b, ok := replayRun(ctx, t, tc, replayer, r)
		if !ok {
			continue
		}
		replayed++
		recordRun(t, dir, chosen, r, b)
	}
	t.Logf("replayed %d workflow histories against the current workflow code", replayed)
	for name := range record {
		if chosen[name] == nil {
			t.Errorf("history %s: no matching workflow run was started by the test", name)
		}
	}
}

// terminatePools ends the runner pools started since since (entity
// workflows that would run forever).
func terminatePools(ctx context.Context, t *testing.T, tc client.Client, since time.Time, filter string) {
	for _, run := range listRuns(t, tc, since, filter) {
		if run.GetType().GetName() == runnerapi.RunnerPoolName && run.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			ex := run.GetExecution()
			_ = tc.TerminateWorkflow(ctx, ex.GetWorkflowId(), ex.GetRunId(), "end of test: recording histories")
		}
	}
}

// awaitRecordedRuns lists the runs started since since until each matcher
// of record has a closed run (30 seconds at the most); it returns the runs,
// oldest first, and the run chosen for each name of record.
func awaitRecordedRuns(t *testing.T, tc client.Client, since time.Time, filter string, record map[string]runMatcher) ([]*workflowpb.WorkflowExecutionInfo, map[string]*workflowpb.WorkflowExecutionInfo) {
	chosen := map[string]*workflowpb.WorkflowExecutionInfo{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		runs := listRuns(t, tc, since, filter)
		if chooseRuns(runs, record, chosen) == 0 || time.Now().After(deadline) {
			return runs, chosen
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// chooseRuns sets chosen to the oldest run of runs that each matcher of
// record matches; it returns how many names have none yet or one still
// running.
func chooseRuns(runs []*workflowpb.WorkflowExecutionInfo, record map[string]runMatcher, chosen map[string]*workflowpb.WorkflowExecutionInfo) int {
	clear(chosen)
	pending := 0
	for name, match := range record {
		for _, r := range runs { // oldest first
			if match(r) {
				chosen[name] = r
				break
			}
		}
		if r := chosen[name]; r == nil || r.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			pending++
		}
	}
	return pending
}

// replayRun fetches run r's history and replays it against this tree's
// workflow code; it returns the history as JSON, or false when it could
// not be fetched. Either failure fails the test.
func replayRun(ctx context.Context, t *testing.T, tc client.Client, replayer worker.WorkflowReplayer, r *workflowpb.WorkflowExecutionInfo) ([]byte, bool) {
	ex := r.GetExecution()
	b, err := historyJSON(ctx, tc, ex.GetWorkflowId(), ex.GetRunId())
	if err != nil {
		t.Errorf("history of %s (%s): %v", ex.GetWorkflowId(), ex.GetRunId(), err)
		return nil, false
	}
	if err := replayJSON(replayer, b, ex.GetWorkflowId(), ex.GetRunId()); err != nil {
		t.Errorf("replaying %s %s (run %s) against the current workflow code: %v",
			r.GetType().GetName(), ex.GetWorkflowId(), ex.GetRunId(), err)
	}
	return b, true
}

// recordRun writes history b of run r to dir as <name>.json for each name
// chosen for r, when dir is set and the test has not failed.
func recordRun(t *testing.T, dir string, chosen map[string]*workflowpb.WorkflowExecutionInfo, r *workflowpb.WorkflowExecutionInfo, b []byte) {
	ex := r.GetExecution()
	for name, c := range chosen {
		if c != r || dir == "" || t.Failed() {
			continue
		}
		if r.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Errorf("%s: %s is still running; not recorded", name, ex.GetWorkflowId())
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s %s (%s, %d KiB) in %s", r.GetType().GetName(), ex.GetWorkflowId(), r.GetStatus(), len(b)>>10, path)
	}
}

// listRuns lists the workflow runs started since since, oldest first.
func listRuns(t *testing.T, tc client.Client, since time.Time, filter string) []*workflowpb.WorkflowExecutionInfo {
	t.Helper()
	q := fmt.Sprintf("StartTime >= '%s'", since.UTC().Format(time.RFC3339Nano))
	if filter != "" {
		q += " AND (" + filter + ")"
	}
	var out []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token, PageSize: 1000})
		cancel()
		if err != nil {
			t.Fatalf("list workflows (%s): %v", q, err)
		}
		out = append(out, resp.GetExecutions()...)
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	slices.SortStableFunc(out, func(a, b *workflowpb.WorkflowExecutionInfo) int {
		return a.GetStartTime().AsTime().Compare(b.GetStartTime().AsTime())
	})
	return out
}

// fetchHistory reads a run's whole history.
func fetchHistory(ctx context.Context, tc client.Client, id, runID string) (*historypb.History, error) {
	h := &historypb.History{}
	it := tc.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, err
		}
		h.Events = append(h.Events, ev)
	}
	return h, nil
}

// historyJSON is a run's history as `temporal workflow show --output json`
// writes it and WorkflowReplayer.ReplayWorkflowHistoryFromJSONFile reads it:
// protojson, re-indented so that the bytes do not depend on protojson's
// deliberately unstable whitespace.
func historyJSON(ctx context.Context, tc client.Client, id, runID string) ([]byte, error) {
	h, err := fetchHistory(ctx, tc, id, runID)
	if err != nil {
		return nil, err
	}
	raw, err := protojson.Marshal(h)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", " "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// newReplayer registers every Drydock workflow under the name the worker
// (worker/main.go) registers it with.
func newReplayer() worker.WorkflowReplayer {
	r := worker.NewWorkflowReplayer()
	workflows.Register(r)
	return r
}

// replayJSON replays a history from the JSON a recorded file holds, so that
// every end-to-end run also checks the format round trip.
func replayJSON(r worker.WorkflowReplayer, b []byte, id, runID string) error {
	h, err := client.HistoryFromJSON(bytes.NewReader(b), client.HistoryJSONOptions{})
	if err != nil {
		return fmt.Errorf("decode history JSON: %w", err)
	}
	quiet := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	return r.ReplayWorkflowHistoryWithOptions(quiet, h, worker.ReplayWorkflowHistoryOptions{
		OriginalExecution: workflow.Execution{ID: id, RunID: runID},
	})
}
