package workflows

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/workflows/runnerapi"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// The histories in testdata/histories were recorded from the end-to-end
// tests (`make record-histories`). Replaying them against the workflow code
// fails when a change would break the workflows already running in
// production: anything that changes a workflow's command sequence must be
// guarded by workflow.GetVersion. Each recording is a set of its own
// (testdata/histories/<set>/, named by `make record-histories` after the date
// and time), and sets are never overwritten: the old ones stand for the runs
// the earlier code started, which are still running in production.
const historiesDir = "testdata/histories"

// replayer registers every Drydock workflow under the name worker/main.go
// registers it with.
func replayer() worker.WorkflowReplayer {
	r := worker.NewWorkflowReplayer()
	Register(r)
	return r
}

func recordedHistories(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(historiesDir, "*", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in %s: run `make record-histories`", historiesDir)
	return files
}

func loadHistory(t *testing.T, path string) *historypb.History {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err, path)
	require.NotEmpty(t, h.GetEvents(), path)
	return h
}

// replay replays one history, as the run it was recorded from.
func replay(r worker.WorkflowReplayer, h *historypb.History) error {
	quiet := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	id := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowId()
	return r.ReplayWorkflowHistoryWithOptions(quiet, h, worker.ReplayWorkflowHistoryOptions{
		OriginalExecution: workflow.Execution{ID: id},
	})
}

func TestReplayRecordedHistories(t *testing.T) {
	types := map[string]int{}
	for _, path := range recordedHistories(t) {
		h := loadHistory(t, path)
		types[h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName()]++
		name := filepath.Base(filepath.Dir(path)) + "/" + strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			assert.NoError(t, replay(replayer(), h), "replaying %s: a change to the workflow code breaks runs like it", path)
		})
	}
	// Every workflow type has a history, so none escapes the check.
	for _, name := range []string{PreviewLifecycleName, runnerapi.RunnerPoolName, runnerapi.RunnerProvisionName,
		runnerapi.RunnerJobName, RunnerPrewarmName, ReconcileName, slotsapi.WorkflowName} {
		assert.Positive(t, types[name], "no recorded history of %s in %s", name, historiesDir)
	}
}

// changedPreviewLifecycle is PreviewLifecycle with a command inserted
// before all others, as an unguarded change would (a new first timer).
func changedPreviewLifecycle(ctx workflow.Context, in PreviewInput) error {
	if err := workflow.Sleep(ctx, time.Second); err != nil {
		return err
	}
	return PreviewLifecycle(ctx, in)
}

// The replay test can fail: a changed command sequence is reported as
// nondeterminism for every recorded preview history.
func TestReplayDetectsAnIncompatibleChange(t *testing.T) {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(changedPreviewLifecycle, workflow.RegisterOptions{Name: PreviewLifecycleName})
	previews := 0
	for _, path := range recordedHistories(t) {
		h := loadHistory(t, path)
		if h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName() != PreviewLifecycleName {
			continue
		}
		previews++
		err := replay(r, h)
		require.Error(t, err, "%s replayed against a changed PreviewLifecycle", path)
		// TMPRL1100 is the SDK's code for nondeterminism.
		assert.Contains(t, err.Error(), "[TMPRL1100]", "%s: a nondeterminism error", path)
		t.Logf("%s: %v", filepath.Base(path), err)
	}
	require.Positive(t, previews, "no recorded PreviewLifecycle history in %s", historiesDir)
}
