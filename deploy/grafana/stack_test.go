package grafana

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

const (
	owner    = "dash-org"
	repoName = "shop"
	pool     = "linux"
	// The build fails once the head carries a file named "fail": the second
	// pull request's preview fails, so the failure panels have a series.
	spec = `
machine: {vcpu: 1, memory_mib: 512, storage_gib: 2, autosleep: 4s}
app: {port: 3000, health_path: /healthz, health_timeout: 60s}
build:
  - {name: build, run: 'test ! -f fail'}
start: {command: [python3, examples/previewapp/app.py]}
`
)

var jobLabels = []string{"self-hosted", "linux", "dash"}

// startStack brings up a whole Drydock (the real binaries, a Temporal dev
// server, the Dedalus emulator, the GitHub double) with one runner pool.
func startStack(ctx context.Context, t *testing.T, cli string) *harness.Harness {
	t.Helper()
	h, err := harness.Start(ctx, harness.Options{
		Dir: t.TempDir(), TemporalCLI: cli,
		Emulator: emulator.Config{BootDelay: 100 * time.Millisecond, WakeDelay: time.Second, SleepDelay: 20 * time.Millisecond, Seed: 7},
		Pools: func(h *harness.Harness) (string, error) {
			return h.FakeRunnerPools(harness.FakeRunnerPool{
				Name: pool, Org: owner, Repo: repoName, Labels: jobLabels,
				VCPU: 2, MemoryMiB: 1024, StorageGiB: 4, Autosleep: "10m",
				MaxMachines: 2, PickupTimeout: "30s", Retries: 9,
			})
		},
		WorkerEnv: []string{"RECONCILE_EVERY=0"},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []string{"worker", "webhook", "router"} {
				t.Logf("%s log tail:\n%s", p, h.LogTail(p, 3000))
			}
		}
		h.Close()
	})
	for _, u := range []string{h.WorkerAdminURL, h.WebhookAdminURL, h.RouterAdminURL} {
		require.NoError(t, harness.WaitFor(ctx, u+"/readyz", harness.HTTPReady(u+"/readyz")))
	}
	return h
}

// runDemo moves every figure the dashboard plots: a pull request's preview
// deploys (after one GitHub 502), is requested cold and warm, sleeps and is
// woken by a request; another's deploy fails; a forged delivery and a ping
// arrive; a runner job runs on the pool; a reconciliation meets Dedalus 503s.
func runDemo(ctx context.Context, t *testing.T, h *harness.Harness) {
	t.Helper()
	h.GH.SetFile(owner, repoName, "main", ".drydock/preview.yml", spec)
	h.GH.FailNext(githubtest.RouteCreateDeployment, 1, githubtest.BadGateway())
	good := openPR(ctx, t, h, 1, "")
	forged, err := http.Post(h.WebhookURL+"/webhooks/github", "application/json", strings.NewReader(`{"action":"opened"}`))
	require.NoError(t, err)
	forged.Body.Close()
	deliver(ctx, t, h, "ping", "dash-ping", ghfixture.Ping(owner, repoName, 1), http.StatusOK)

	jobID := time.Now().Unix()%1_000_000*1000 + 7
	h.GH.AddJob(owner, repoName, githubtest.Job{ID: jobID, Labels: jobLabels, Duration: 2 * time.Second})
	body, err := h.WorkflowJob("queued", ghfixture.Job{ID: jobID, RunID: jobID * 10, Name: "build", Owner: owner, Repo: repoName, Org: owner, Labels: jobLabels})
	require.NoError(t, err)
	deliver(ctx, t, h, "workflow_job", "dash-job-queued", body, http.StatusAccepted)

	waitPhase(ctx, t, h, good, workflows.PreviewReady)
	for range 2 { // cold, then warm
		code, _, err := h.Get(ctx, owner, repoName, 1, "/")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	}
	require.Eventually(t, func() bool { return h.Emu.Stats().Autosleeps >= 1 }, time.Minute, 100*time.Millisecond, "the preview never autoslept")
	code, _, err := h.Get(ctx, owner, repoName, 1, "/") // wakes it
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	// Only now (its machine would autosleep too) the failing pull request.
	waitPhase(ctx, t, h, openPR(ctx, t, h, 2, "fail"), workflows.PreviewFailed)
	waitCompleted(ctx, t, h.TC, runnerapi.JobWorkflowID(jobID))

	// Only the reconciler lists machines: its list fails (and is retried),
	// which the Dedalus error panels count; the next one measures the
	// machines running unused.
	require.NoError(t, h.Emu.SetFaults(emulator.Faults{Routes: map[string]emulator.FaultRule{"listMachines": {Error503: 1}}}))
	reconcile(ctx, t, h, "dash-reconcile-faulted")
	require.NoError(t, h.Emu.SetFaults(emulator.Faults{}))
	reconcile(ctx, t, h, "dash-reconcile")
}

// reconcile runs one reconciliation to its end.
func reconcile(ctx context.Context, t *testing.T, h *harness.Harness, id string) {
	t.Helper()
	run, err := h.TC.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue}, workflows.ReconcileName)
	require.NoError(t, err)
	require.NoError(t, run.Get(ctx, nil))
}

// openPR opens pull request n from a repository of its own; a non-empty
// file is committed to its head.
func openPR(ctx context.Context, t *testing.T, h *harness.Harness, n int, file string) string {
	t.Helper()
	repo, err := harness.NewGitRepo(filepath.Join(t.TempDir(), "src"))
	require.NoError(t, err)
	if file != "" {
		require.NoError(t, os.WriteFile(filepath.Join(repo.Dir, file), []byte("yes\n"), 0o644))
	}
	sha, err := repo.Commit("head")
	require.NoError(t, err)
	h.GH.SetPullRequest(owner, repoName, githubtest.PullRequest{Number: n, State: "open", HeadSHA: sha, HeadRef: "feature"})
	body, err := h.PullRequest("opened", ghfixture.PR{Owner: owner, Repo: repoName, Number: n, HeadSHA: sha, HeadRef: "feature", CloneURL: repo.Dir})
	require.NoError(t, err)
	deliver(ctx, t, h, "pull_request", fmt.Sprintf("dash-opened-%d", n), body, http.StatusAccepted)
	return workflows.PreviewWorkflowID(owner, repoName, n)
}

func deliver(ctx context.Context, t *testing.T, h *harness.Harness, event, delivery string, body []byte, want int) {
	t.Helper()
	code, err := h.Deliver(ctx, event, delivery, body)
	require.NoError(t, err)
	require.Equal(t, want, code, "%s delivery %s", event, delivery)
}

func waitPhase(ctx context.Context, t *testing.T, h *harness.Harness, id string, phase workflows.PreviewPhase) {
	t.Helper()
	require.Eventually(t, func() bool {
		st, err := h.PreviewStatus(ctx, id, 5*time.Second)
		return err == nil && st.Phase == phase
	}, 2*time.Minute, 200*time.Millisecond, "preview %s never reached %s", id, phase)
}

func waitCompleted(ctx context.Context, t *testing.T, tc client.Client, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		d, err := tc.DescribeWorkflowExecution(ctx, id, "")
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	}, 2*time.Minute, 200*time.Millisecond, "%s never completed", id)
}
