// Package operations tests what an operator relies on, on a whole Drydock
// (the real worker, webhook and router binaries, a real Temporal dev
// server, the Dedalus emulator and the GitHub API double): the Prometheus
// figures move as an end-to-end run says, and SIGTERM lets work in flight
// finish.
package operations

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/internal/testing/testenv"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

const (
	owner    = "ops-org"
	repoName = "shop"
	pool     = "linux"
	// The build step is slow once the head carries a file named "slow", so
	// a redeploy has a command running long enough to stop the worker under it.
	spec = `
machine: {vcpu: 1, memory_mib: 512, storage_gib: 2, autosleep: 4s}
app: {port: 3000, health_path: /healthz, health_timeout: 60s}
build:
  - {name: build, run: 'test ! -f slow || sleep 5'}
start: {command: [python3, examples/previewapp/app.py]}
`
)

var jobLabels = []string{"self-hosted", "linux", "ops"}

func TestOperationsEndToEnd(t *testing.T) {
	cli, err := testenv.TemporalCLI()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	h, err := harness.Start(ctx, harness.Options{
		Dir: dir, TemporalCLI: cli,
		Emulator: emulator.Config{BootDelay: 100 * time.Millisecond, WakeDelay: time.Second, SleepDelay: 20 * time.Millisecond, Seed: 7},
		Pools:    poolsJSON,
		// A stop timeout well above the slow build, so the worker test below
		// shows the build finishing rather than being cancelled.
		WorkerEnv: []string{"RECONCILE_EVERY=0", "WORKER_STOP_TIMEOUT=30s"},
	})
	require.NoError(t, err)
	defer h.Close()
	defer logTailsOnFailure(t, h)

	// Every binary answers liveness and readiness on its admin listener.
	for _, u := range []string{h.WorkerAdminURL, h.WebhookAdminURL, h.RouterAdminURL} {
		require.NoError(t, harness.WaitFor(ctx, u+"/readyz", harness.HTTPReady(u+"/readyz")))
		code, _ := get(t, u+"/healthz")
		assert.Equal(t, http.StatusOK, code, u)
	}
	before := scrapeAll(t, h)

	r := &opsRun{ctx: ctx, h: h}
	r.openPullRequest(t, dir)
	r.browsePreview(t)
	r.runJob(t)
	checkFiguresMoved(t, h, before)

	t.Run("router finishes a request in flight on SIGTERM", r.routerFinishesInFlight)
	t.Run("worker lets a running activity finish on SIGTERM", r.workerLetsActivityFinish)
	t.Run("webhook finishes a delivery in flight on SIGTERM", r.webhookFinishesInFlight)
	t.Run("closing the pull request empties the gauges", r.closingEmptiesGauges)
}

// logTailsOnFailure logs the tail of each binary's log if t failed.
func logTailsOnFailure(t *testing.T, h *harness.Harness) {
	if t.Failed() {
		for _, p := range []string{"worker", "webhook", "router"} {
			t.Logf("%s log tail:\n%s", p, h.LogTail(p, 4000))
		}
	}
}

// opsRun is the end-to-end run the operations test follows: one pull
// request's preview (workflow id) on harness h, and a runner job.
type opsRun struct {
	ctx  context.Context
	h    *harness.Harness
	repo *harness.GitRepo
	pr   ghfixture.PR
	ping []byte
	id   string
}

// openPullRequest opens pull request 1 (its repository under dir) and
// waits for its preview; a forged delivery and a ping arrive too.
func (r *opsRun) openPullRequest(t *testing.T, dir string) {
	ctx, h := r.ctx, r.h
	repo, err := harness.NewGitRepo(filepath.Join(dir, "src"))
	require.NoError(t, err)
	sha1, err := repo.Commit("base")
	require.NoError(t, err)
	h.GH.SetFile(owner, repoName, "main", ".drydock/preview.yml", spec)
	h.GH.SetPullRequest(owner, repoName, githubtest.PullRequest{Number: 1, State: "open", HeadSHA: sha1, HeadRef: "feature"})
	r.repo = repo
	r.pr = ghfixture.PR{Owner: owner, Repo: repoName, Number: 1, HeadSHA: sha1, HeadRef: "feature", CloneURL: repo.Dir}
	deliver(ctx, t, h, "pull_request", "ops-opened", mustBody(h.PullRequest("opened", r.pr)), http.StatusAccepted)
	forged, err := http.Post(h.WebhookURL+"/webhooks/github", "application/json", strings.NewReader(`{"action":"opened"}`))
	require.NoError(t, err)
	forged.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, forged.StatusCode)
	r.ping = ghfixture.Ping(owner, repoName, 1)
	deliver(ctx, t, h, "ping", "ops-ping", r.ping, http.StatusOK)

	r.id = workflows.PreviewWorkflowID(owner, repoName, 1)
	waitPreview(ctx, t, h, r.id, sha1)
}

// browsePreview requests the preview through the router: the first
// request asks Temporal (cold), the next is warm; after the machine
// autosleeps, the next request wakes it.
func (r *opsRun) browsePreview(t *testing.T) {
	r.getPreview(t)
	r.getPreview(t)
	waitAsleep(r.ctx, t, r.h, 1)
	r.getPreview(t)
}

func (r *opsRun) getPreview(t *testing.T) {
	code, _, err := r.h.Get(r.ctx, owner, repoName, 1, "/")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
}

// runJob runs a runner job on the pool.
func (r *opsRun) runJob(t *testing.T) {
	ctx, h := r.ctx, r.h
	jobID := time.Now().Unix()%1_000_000*1000 + 1
	h.GH.AddJob(owner, repoName, githubtest.Job{ID: jobID, Labels: jobLabels, Duration: 2 * time.Second})
	deliver(ctx, t, h, "workflow_job", "ops-job-queued", mustBody(h.WorkflowJob("queued",
		ghfixture.Job{ID: jobID, RunID: jobID * 10, Name: "build", Owner: owner, Repo: repoName, Org: owner, Labels: jobLabels})), http.StatusAccepted)
	waitCompleted(ctx, t, h.TC, runnerapi.JobWorkflowID(jobID))
}

// checkFiguresMoved checks that the figures moved as the run says. The
// SDK's figures are reported every second and the Temporal readings are
// cached for 15 s: poll. On failure it logs Drydock's series.
func checkFiguresMoved(t *testing.T, h *harness.Harness, before map[string]scrape) {
	var after map[string]scrape
	deadline := time.Now().Add(45 * time.Second)
	checks := func(c *assert.CollectT) {
		after = scrapeAll(t, h)
		d := func(bin, name string, labels ...string) float64 {
			return after[bin].value(name, labels...) - before[bin].value(name, labels...)
		}
		checkWebhookFigures(c, d)
		checkRouterFigures(c, d, after["router"])
		checkWorkerFigures(c, d, after["worker"])
	}
	if !assert.EventuallyWithT(t, checks, time.Until(deadline), 500*time.Millisecond) {
		for bin, sc := range after {
			for name, fam := range sc {
				if strings.HasPrefix(name, "drydock_") {
					for _, m := range fam.Metric {
						t.Logf("%s: %s %v", bin, name, m)
					}
				}
			}
		}
		t.FailNow()
	}
}

// delta is how much a series of a binary moved during the run.
type delta func(bin, name string, labels ...string) float64

func checkWebhookFigures(c *assert.CollectT, d delta) {
	assert.Equal(c, 1.0, d("webhook", "drydock_webhook_deliveries_total", "event", "pull_request", "action", "opened", "outcome", "accepted"))
	assert.Equal(c, 1.0, d("webhook", "drydock_webhook_deliveries_total", "outcome", "rejected", "reason", "bad_signature"))
	assert.Equal(c, 1.0, d("webhook", "drydock_webhook_deliveries_total", "event", "ping", "outcome", "ignored", "reason", "ping"))
	assert.Equal(c, 1.0, d("webhook", "drydock_webhook_deliveries_total", "event", "workflow_job", "action", "queued", "outcome", "accepted"))
	assert.Equal(c, 1.0, d("webhook", "drydock_webhook_deliveries_total", "event", "workflow_job", "action", "in_progress", "outcome", "accepted"))
}

// checkRouterFigures: the first request and the one after autosleep were
// cold.
func checkRouterFigures(c *assert.CollectT, d delta, after scrape) {
	assert.Equal(c, 2.0, d("router", "drydock_router_requests_total", "path", "cold"))
	assert.Equal(c, 1.0, d("router", "drydock_router_requests_total", "path", "warm"))
	assert.Equal(c, 3.0, d("router", "drydock_router_added_latency_seconds"), "every proxied request's added latency")
	assert.Equal(c, 2.0, d("router", "drydock_router_wakes_total", "result", "ok"))
	assert.GreaterOrEqual(c, after.sum("drydock_router_added_latency_seconds", "path", "cold"), 1.0,
		"the cold request after autosleep waited for the 1 s wake")
}

// checkWorkerFigures: the preview's wake after autosleep, and the
// runner's.
func checkWorkerFigures(c *assert.CollectT, d delta, after scrape) {
	assert.GreaterOrEqual(c, d("worker", "drydock_machine_wake_seconds", "workflow_type", workflows.PreviewLifecycleName), 1.0)
	assert.GreaterOrEqual(c, after.sum("drydock_machine_wake_seconds", "workflow_type", workflows.PreviewLifecycleName), 1.0)
	assert.Equal(c, 1.0, after.value("drydock_previews", "phase", "ready"))
	assert.GreaterOrEqual(c, after.value("drydock_pool_machines", "pool", pool), 1.0)
	assert.Greater(c, d("worker", "temporal_workflow_completed_total", "workflow_type", runnerapi.RunnerJobName), 0.0, "the SDK's own metrics")
	// from the workflows, through the SDK's replay-aware handler
	assert.Equal(c, 1.0, d("worker", "drydock_runner_dispatch_latency_seconds", "pool", pool), "one job dispatched")
	assert.Equal(c, 1.0, d("worker", "drydock_runner_job_queue_seconds", "pool", pool), "one job's queue time")
	assert.Greater(c, d("worker", "drydock_preview_awake_seconds_total", "repo", owner+"/"+repoName, "pr", "1"), 0.0,
		"the wake after autosleep closed an awake interval")
	assert.Greater(c, d("worker", "drydock_pool_awake_seconds_total", "pool", pool), 0.0, "the runner machine slept after its job")
	assert.Greater(c, d("worker", "drydock_github_api_requests_total", "credential", "token"), 0.0)
	remaining := after.value("drydock_github_rate_limit_remaining", "credential", "token", "resource", "core")
	assert.True(c, remaining > 4000 && remaining < 5000, "rate limit remaining %v", remaining)
}

func (r *opsRun) routerFinishesInFlight(t *testing.T) {
	ctx, h := r.ctx, r.h
	waitAsleep(ctx, t, h, 2)
	type answer struct {
		code int
		body []byte
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		code, body, err := h.Get(ctx, owner, repoName, 1, "/")
		got <- answer{code, body, err}
	}()
	// The request waits for the 1 s wake; stop the router under it.
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, h.Router.Signal(syscall.SIGTERM))
	a := <-got
	require.NoError(t, a.err)
	assert.Equal(t, http.StatusOK, a.code, "the request in flight completed: %s", a.body)
	exit, err := h.Router.Wait(20 * time.Second)
	require.NoError(t, err)
	assert.NoError(t, exit, "the router exits 0")
	_, err = http.Get(h.RouterURL + "/healthz")
	assert.Error(t, err, "no longer accepting")
	require.NoError(t, h.Router.Start())
}

func (r *opsRun) workerLetsActivityFinish(t *testing.T) {
	ctx, h := r.ctx, r.h
	require.NoError(t, os.WriteFile(filepath.Join(r.repo.Dir, "slow"), []byte("yes\n"), 0o644))
	sha2, err := r.repo.Commit("slow build")
	require.NoError(t, err)
	h.GH.SetPullRequest(owner, repoName, githubtest.PullRequest{Number: 1, State: "open", HeadSHA: sha2, HeadRef: "feature"})
	r.pr.HeadSHA = sha2
	deliver(ctx, t, h, "pull_request", "ops-sync", mustBody(h.PullRequest("synchronize", r.pr)), http.StatusAccepted)

	actID := r.waitSlowBuild(t)
	stopped := time.Now()
	require.NoError(t, h.Worker.Signal(syscall.SIGTERM))
	exit, err := h.Worker.Wait(45 * time.Second)
	require.NoError(t, err)
	assert.NoError(t, exit, "the worker exits 0")
	assert.Greater(t, time.Since(stopped), time.Second, "the worker waited for the build")

	// The activity completed on its first attempt: not cancelled, not retried.
	completed, failed := r.activityOutcome(t, actID)
	assert.True(t, completed, "activity %s completed", actID)
	assert.False(t, failed, "activity %s neither failed nor timed out", actID)
	d, err := h.TC.DescribeWorkflowExecution(ctx, r.id, "")
	require.NoError(t, err)
	for _, pa := range d.GetPendingActivities() {
		assert.NotEqual(t, actID, pa.GetActivityId(), "the build is not pending a retry")
	}

	// A new worker carries on.
	require.NoError(t, h.Worker.Start())
	waitPreview(ctx, t, h, r.id, sha2)
}

// waitSlowBuild waits until the slow build command is running; it returns
// its activity's ID.
func (r *opsRun) waitSlowBuild(t *testing.T) string {
	var actID string
	require.Eventually(t, func() bool {
		d, err := r.h.TC.DescribeWorkflowExecution(r.ctx, r.id, "")
		if err != nil {
			return false
		}
		for _, pa := range d.GetPendingActivities() {
			if pa.GetActivityType().GetName() == "RunCommands" && pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED &&
				time.Since(pa.GetLastStartedTime().AsTime()) > 1500*time.Millisecond {
				actID = pa.GetActivityId()
				return true
			}
		}
		return false
	}, time.Minute, 100*time.Millisecond, "the slow build never ran")
	return actID
}

// activityOutcome reads the preview's history: whether activity actID
// completed, and whether it failed or timed out.
func (r *opsRun) activityOutcome(t *testing.T, actID string) (completed, failed bool) {
	hist := r.h.TC.GetWorkflowHistory(r.ctx, r.id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]string{}
	for hist.HasNext() {
		ev, err := hist.Next()
		require.NoError(t, err)
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.GetEventId()] = a.GetActivityId()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == actID {
			completed = true
		}
		if a := ev.GetActivityTaskFailedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == actID {
			failed = true
		}
		if a := ev.GetActivityTaskTimedOutEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == actID {
			failed = true
		}
	}
	return completed, failed
}

func (r *opsRun) webhookFinishesInFlight(t *testing.T) {
	ctx, h, ping := r.ctx, r.h, r.ping
	// A delivery whose body is still arriving when SIGTERM does.
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.WebhookURL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	fmt.Fprintf(conn, "POST /webhooks/github HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"+
		"X-GitHub-Event: ping\r\nX-GitHub-Delivery: ops-slow-ping\r\nX-Hub-Signature-256: %s\r\nContent-Length: %d\r\n\r\n",
		intake.SignatureHeader([]byte(harness.Secret), ping), len(ping))
	half := len(ping) / 2
	_, err = conn.Write(ping[:half])
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, h.Webhook.Signal(syscall.SIGTERM))
	time.Sleep(500 * time.Millisecond)
	_, err = conn.Write(ping[half:])
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the delivery in flight was answered: %s", body)
	assert.Contains(t, string(body), "pong")
	exit, err := h.Webhook.Wait(20 * time.Second)
	require.NoError(t, err)
	assert.NoError(t, exit, "the webhook server exits 0")
	require.NoError(t, h.Webhook.Start())
	require.NoError(t, harness.WaitFor(ctx, "webhook", harness.HTTPReady(h.WebhookURL+"/readyz")))
}

func (r *opsRun) closingEmptiesGauges(t *testing.T) {
	ctx, h := r.ctx, r.h
	h.GH.SetPullRequest(owner, repoName, githubtest.PullRequest{Number: 1, State: "closed", HeadSHA: r.pr.HeadSHA, HeadRef: "feature"})
	deliver(ctx, t, h, "pull_request", "ops-closed", mustBody(h.PullRequest("closed", r.pr)), http.StatusAccepted)
	waitCompleted(ctx, t, h.TC, r.id)
	assert.EventuallyWithT(t, func(c *assert.CollectT) {
		w := scrapeURL(t, h.WorkerAdminURL)
		assert.Equal(c, 0.0, w.value("drydock_previews"), "no open preview")
	}, 45*time.Second, time.Second)
}

func get(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func mustBody(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func deliver(ctx context.Context, t *testing.T, h *harness.Harness, event, delivery string, body []byte, want int) {
	t.Helper()
	code, err := h.Deliver(ctx, event, delivery, body)
	require.NoError(t, err)
	require.Equal(t, want, code, "%s delivery %s", event, delivery)
}

func waitPreview(ctx context.Context, t *testing.T, h *harness.Harness, id, sha string) {
	t.Helper()
	var last workflows.PreviewStatus
	require.Eventually(t, func() bool {
		st, err := h.PreviewStatus(ctx, id, 5*time.Second)
		last = st
		return err == nil && st.Phase == workflows.PreviewReady && st.DeployedSHA == sha
	}, 2*time.Minute, 200*time.Millisecond, "preview %s never became ready at %s", id, sha)
	_ = last
}

// waitAsleep waits for the emulator to have autoslept n machines in all.
func waitAsleep(ctx context.Context, t *testing.T, h *harness.Harness, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return h.Emu.Stats().Autosleeps >= n }, time.Minute, 100*time.Millisecond,
		"the preview never autoslept")
}

func waitCompleted(ctx context.Context, t *testing.T, tc client.Client, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		d, err := tc.DescribeWorkflowExecution(ctx, id, "")
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	}, 2*time.Minute, 200*time.Millisecond, "%s never completed", id)
}

func poolsJSON(h *harness.Harness) (string, error) {
	return h.FakeRunnerPools(harness.FakeRunnerPool{
		Name: pool, Org: owner, Repo: repoName, Labels: jobLabels,
		VCPU: 2, MemoryMiB: 1024, StorageGiB: 4, Autosleep: "10m",
		MaxMachines: 2, PickupTimeout: "30s", Retries: 9,
	})
}
