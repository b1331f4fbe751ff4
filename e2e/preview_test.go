// Package e2e runs whole Drydock flows against a real Temporal dev server,
// the local Dedalus emulator, a GitHub API test double and real HTTP: signed
// webhooks in, previews served through the router, GitHub reporting out. The
// worker runs as its own process so that it can be killed.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/router"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/internal/testing/testenv"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

var (
	// Where the package's stacks run: the dev server setup starts, or a
	// namespace of the make-cluster Temporal $DRYDOCK_CLUSTER_DIR names.
	temporalAddr, temporalNamespace string
	temporalClient                  client.Client
	workerBin                       string
	fakeRunnerBin                   string
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "drydock-e2e-*")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	// The fakerunner runs as a pool machine's unprivileged runner user.
	if err := harness.ShareWithMachines(dir); err != nil {
		return 0, err
	}
	workerBin = filepath.Join(dir, "worker")
	fakeRunnerBin = filepath.Join(dir, "fakerunner")
	for bin, pkg := range map[string]string{workerBin: "../worker", fakeRunnerBin: "../internal/testing/testenv/fakerunner"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return 0, fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	if dir := os.Getenv(harness.ClusterDirEnv); dir != "" {
		stop, err := useCluster(dir)
		if err != nil {
			return 0, err
		}
		defer stop()
		return m.Run(), nil
	}
	// Continue-as-new is suggested early (the default is thousands of
	// events), so the end-to-end runs, and the histories recorded from them
	// for the replay test, hand their state over: a pool with a queue, a
	// preview woken and pushed to.
	srv, err := testenv.StartTemporal(context.Background(), "--dynamic-config-value", "limit.historyCount.suggestContinueAsNew="+suggestContinueAsNewAfter)
	if err != nil {
		return 0, err
	}
	temporalAddr, temporalNamespace, temporalClient = srv.FrontendHostPort(), "default", srv.Client()
	defer srv.Stop()
	return m.Run(), nil
}

// suggestContinueAsNewAfter is the history length (events) at which the
// end-to-end server suggests continue-as-new.
const suggestContinueAsNewAfter = "150"

const (
	secret   = "e2e-webhook-secret"
	ghToken  = "ghp_e2e_token"
	domain   = "preview.localhost"
	autoSpec = `
machine: {vcpu: 1, memory_mib: 512, storage_gib: 2, autosleep: 2s}
app: {port: 3000, health_path: /healthz, health_timeout: 30s}
env: {GREETING: hello}
setup:
  - {name: toolchain, run: python3 --version}
build:
  - {name: compile, command: [python3, -m, py_compile, examples/previewapp/app.py]}
seed:
  - {name: seed, run: 'mkdir -p "$HOME/data" && date > "$HOME/data/seeded"'}
start: {command: [python3, examples/previewapp/app.py]}
`
)

// stack is one test's Drydock: emulator, GitHub double, worker process,
// webhook server and preview router.
type stack struct {
	t       *testing.T
	emu     *emulator.Server
	gh      *githubtest.Server
	webhook *httptest.Server
	router  *httptest.Server
	tc      client.Client

	mu      sync.Mutex
	worker  *exec.Cmd
	logs    *bytes.Buffer
	workerE []string
}

func newStack(t *testing.T) *stack { return newStackWith(t, nil) }

// newStackWith also configures runner pools: poolsJSON gets the stack (the
// GitHub double's and the webhook's URLs) and returns RUNNER_POOLS.
func newStackWith(t *testing.T, poolsJSON func(*stack) string) *stack {
	t.Helper()
	s := &stack{t: t, tc: temporalClient, logs: &bytes.Buffer{}}
	emu, err := emulator.New(emulator.Config{
		Addr: "127.0.0.1:0", BootDelay: 200 * time.Millisecond, WakeDelay: 300 * time.Millisecond,
		SleepDelay: 50 * time.Millisecond, Seed: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	require.NoError(t, emu.Start())
	s.emu = emu
	t.Cleanup(func() { _ = emu.Close(context.Background()) })

	s.gh = githubtest.New(t)
	s.gh.AddToken(ghToken, "drydock-bot")

	// The webhook's URL is part of the pools' configuration: serve first, route after.
	var handler http.Handler
	s.webhook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(s.webhook.Close)
	poolCfg := &pools.Config{}
	runnerPools := ""
	if poolsJSON != nil {
		runnerPools = poolsJSON(s)
		var err error
		poolCfg, err = pools.LoadFrom("", runnerPools)
		require.NoError(t, err)
	}
	prs, err := intake.NewPullRequests(intake.PullRequestOptions{
		Temporal: s.tc, Policy: intake.PreviewPolicy{Label: "preview", LocalCloneURLs: true},
	})
	require.NoError(t, err)
	jobs, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: s.tc, Pools: poolCfg})
	require.NoError(t, err)
	mux := intake.NewMux()
	mux.Handle("pull_request", prs)
	mux.Handle("workflow_job", jobs)
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: intake.Dedupe(mux, intake.NewRecentDeliveries(1000))})
	require.NoError(t, err)
	handler = h

	rt, err := router.New(router.Options{
		Domain: domain, Waker: router.NewTemporalWaker(s.tc),
		WakeTimeout: 30 * time.Second, AwakeTTL: time.Second, TouchEvery: time.Minute,
	})
	require.NoError(t, err)
	s.router = httptest.NewServer(rt)
	t.Cleanup(s.router.Close)

	s.workerE = append(os.Environ(),
		"TEMPORAL_ADDRESS="+temporalAddr, "TEMPORAL_NAMESPACE="+temporalNamespace,
		"DEDALUS_BASE_URL="+emu.URL(), "DEDALUS_API_KEY="+emu.APIKey(),
		"GITHUB_TOKEN="+ghToken, "GITHUB_API_URL="+s.gh.URL(),
		"PREVIEW_PUBLIC_URL=http://pr-{number}--{owner}--{repo}."+domain+":8090",
		"RUNNER_POOLS="+runnerPools,
		"LOG_LEVEL=warn", "WORKER_METRICS_ADDR=127.0.0.1:0",
		// Wakes refresh the PR comment at once, so the recorded histories cover it.
		"PREVIEW_AWAKE_REPORT_EVERY=1s",
		// Previews are public here; tests of the router's login set another.
		"PREVIEW_VISIBILITY=public",
	)
	s.startWorker()
	t.Cleanup(func() {
		// Pools are entity workflows that outlive a test: end this stack's,
		// whose machines die with its emulator.
		for _, name := range poolCfg.Names() {
			_ = s.tc.TerminateWorkflow(context.Background(), runnerapi.PoolWorkflowID(name), "", "end of test")
		}
		s.stopWorker(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("worker output:\n%s", s.logs.String())
		}
	})
	return s
}

func (s *stack) startWorker() {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(workerBin)
	cmd.Env = s.workerE
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	require.NoError(s.t, cmd.Start())
	s.worker = cmd
}

func (s *stack) stopWorker(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.worker == nil {
		return
	}
	_ = s.worker.Process.Signal(sig)
	_ = s.worker.Wait()
	s.worker = nil
}

// repo is a local git repository standing in for the PR's head repository.
type repo struct {
	t *testing.T
	*harness.GitRepo
	dir string
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	g, err := harness.NewGitRepo(t.TempDir())
	require.NoError(t, err)
	return &repo{t: t, GitRepo: g, dir: g.Dir}
}

func (r *repo) head() string {
	sha, err := r.Head()
	require.NoError(r.t, err)
	return sha
}

func (r *repo) commit(msg string) string {
	sha, err := r.Commit(msg)
	require.NoError(r.t, err)
	return sha
}

// deliver posts a signed pull_request delivery.
func (s *stack) deliver(action string, pr ghfixture.PR, delivery string) (int, map[string]string) {
	s.t.Helper()
	body, err := ghfixture.PullRequest(action, pr)
	require.NoError(s.t, err)
	return s.post("pull_request", delivery, body, intake.SignatureHeader([]byte(secret), body))
}

func (s *stack) post(event, delivery string, body []byte, sig string) (int, map[string]string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.webhook.URL+"/webhooks/github", bytes.NewReader(body))
	require.NoError(s.t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (s *stack) tryStatus(id string) (workflows.PreviewStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st workflows.PreviewStatus
	v, err := s.tc.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err == nil {
		err = v.Get(&st)
	}
	return st, err
}

func (s *stack) waitFor(id string, what string, ok func(workflows.PreviewStatus) bool) workflows.PreviewStatus {
	s.t.Helper()
	var st workflows.PreviewStatus
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if st, err = s.tryStatus(id); err != nil {
			// A query waits for a worker: right after a crash there is none yet.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if ok(st) {
			return st
		}
		if st.Phase == workflows.PreviewFailed && !strings.Contains(what, "fail") {
			s.t.Fatalf("preview failed while waiting for %s: %s", what, st.LastError)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("timed out waiting for %s; last status %+v", what, st)
	return st
}

// get sends a request for one PR's preview through the router.
func (s *stack) get(owner, name string, number int, path string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, s.router.URL+path, nil)
	require.NoError(s.t, err)
	req.Host = fmt.Sprintf("pr-%d--%s--%s.%s", number, strings.ToLower(owner), strings.ToLower(name), domain)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// previewVisibility is the visibility the emulator recorded for the
// status's Dedalus preview.
func (s *stack) previewVisibility(st workflows.PreviewStatus) string {
	s.t.Helper()
	c, err := dedalus.New(dedalus.Options{BaseURL: s.emu.URL(), APIKey: s.emu.APIKey()})
	require.NoError(s.t, err)
	pv, err := c.GetPreview(context.Background(), st.MachineID, st.PreviewID)
	require.NoError(s.t, err)
	return pv.Visibility
}

func (s *stack) waitClosed(id string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	require.NoError(s.t, s.tc.GetWorkflow(ctx, id, "").Get(ctx, nil))
	desc, err := s.tc.DescribeWorkflowExecution(ctx, id, "")
	require.NoError(s.t, err)
	assert.Equal(s.t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.GetWorkflowExecutionInfo().GetStatus())
}

func TestPreviewLifecycleEndToEnd(t *testing.T) {
	s := newStack(t)
	const owner, name, number = "Codertocat", "Hello-World", 7
	s.gh.SetFile(owner, name, "main", ".drydock/preview.yml", autoSpec)
	src := newRepo(t)
	sha1 := src.head()
	pwned := filepath.Join(t.TempDir(), "pwned")
	pr := ghfixture.PR{Owner: owner, Repo: name, Number: number, HeadSHA: sha1,
		HeadRef: "feature/x$(touch " + pwned + ")", CloneURL: src.dir}
	id := workflows.PreviewWorkflowID(owner, name, number)
	s.keepHistories(map[string]runMatcher{"preview-lifecycle-open-wake-push-close": withID(id)})

	// Rejected input starts nothing.
	body, err := ghfixture.PullRequest("opened", pr)
	require.NoError(t, err)
	code, _ := s.post("pull_request", "bad-sig", body, intake.SignatureHeader([]byte("wrong"), body))
	assert.Equal(t, http.StatusUnauthorized, code)
	if desc, err := s.tc.DescribeWorkflowExecution(context.Background(), id, ""); err == nil {
		// An earlier test run's completed workflow may exist; nothing may be running.
		assert.NotEqual(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.GetWorkflowExecutionInfo().GetStatus(),
			"no workflow was started by a badly signed delivery")
	}

	// A signed opened delivery: accepted within milliseconds.
	start := time.Now()
	code, out := s.deliver("opened", pr, "delivery-opened")
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, id, out["workflow_id"])
	t.Logf("opened accepted in %s", time.Since(start))

	st := s.waitFor(id, "ready", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	t.Logf("preview ready %s after the webhook", time.Since(start))
	assert.Equal(t, sha1, st.DeployedSHA)
	assert.NoFileExists(t, pwned, "the branch name ran nothing")
	assert.Equal(t, workflows.VisibilityPublic, st.Visibility, "the worker's PREVIEW_VISIBILITY")
	assert.Equal(t, workflows.VisibilityPublic, s.previewVisibility(st), "the Dedalus preview has it too")

	code, page := s.get(owner, name, number, "/")
	require.Equal(t, http.StatusOK, code, page)
	assert.Contains(t, page, sha1)

	// Redelivery changes nothing.
	code, _ = s.deliver("opened", pr, "delivery-opened")
	assert.Equal(t, http.StatusOK, code)

	// GitHub saw a deployment going in_progress → success and one PR comment with the URL.
	deps := s.gh.Deployments(owner, name)
	require.Len(t, deps, 1)
	assert.Equal(t, sha1, deps[0].SHA)
	assert.Equal(t, "preview/pr-7", deps[0].Environment)
	var states []string
	for _, ds := range deps[0].Statuses {
		states = append(states, ds.State)
	}
	assert.Equal(t, []string{"in_progress", "success"}, states)
	assert.Equal(t, "http://pr-7--codertocat--hello-world.preview.localhost:8090", deps[0].Statuses[1].EnvironmentURL)
	comments := s.gh.Comments(owner, name, number)
	require.Len(t, comments, 1)
	assert.Contains(t, comments[0].Body, "http://pr-7--codertocat--hello-world.preview.localhost:8090")
	assert.Contains(t, comments[0].Body, sha1[:7])

	// The machine falls asleep; 200 concurrent requests wake it exactly once.
	_, before := count(t, s, owner, name, number)
	require.Eventually(t, func() bool { return machinePhase(s.emu, st.MachineID) == "sleeping" }, 20*time.Second, 50*time.Millisecond, "autosleep")
	wakesBefore := s.emu.Stats().Wakes
	var wg sync.WaitGroup
	codes := make([]int, 200)
	counts := make([]int, 200)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], counts[i] = count(t, s, owner, name, number)
		}()
	}
	wg.Wait()
	maxCount := 0
	for i := range codes {
		assert.Equal(t, http.StatusOK, codes[i], "request %d", i)
		maxCount = max(maxCount, counts[i])
	}
	assert.EqualValues(t, 1, s.emu.Stats().Wakes-wakesBefore, "exactly one wake for 200 concurrent requests")
	assert.Equal(t, before+200, maxCount, "the app's in-memory counter survived sleep")

	// A push redeploys: the page shows the new SHA.
	sha2 := src.commit("second push")
	pr.HeadSHA = sha2
	code, _ = s.deliver("synchronize", pr, "delivery-sync")
	require.Equal(t, http.StatusAccepted, code)
	s.waitFor(id, "sha2 deployed", func(st workflows.PreviewStatus) bool {
		return st.Phase == workflows.PreviewReady && st.DeployedSHA == sha2
	})
	code, page = s.get(owner, name, number, "/")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, page, sha2)
	assert.EqualValues(t, 1, s.emu.Stats().Creates, "one machine per PR")

	// Close: everything is gone.
	code, _ = s.deliver("closed", pr, "delivery-closed")
	require.Equal(t, http.StatusAccepted, code)
	s.waitClosed(id)
	stats := s.emu.Stats()
	assert.Equal(t, 0, stats.LiveMachines, "no machine left")
	assert.Equal(t, 0, stats.PreviewsLive, "no preview left")
	code, _ = s.get(owner, name, number, "/")
	assert.Equal(t, http.StatusGone, code)
	deps = s.gh.Deployments(owner, name)
	last := deps[len(deps)-1].Statuses
	assert.Equal(t, "inactive", last[len(last)-1].State)
	comments = s.gh.Comments(owner, name, number)
	require.Len(t, comments, 1, "the comment is updated in place")
	assert.Contains(t, strings.ToLower(comments[0].Body), "closed")
}

func count(t *testing.T, s *stack, owner, name string, number int) (int, int) {
	code, body := s.get(owner, name, number, "/count")
	if code != http.StatusOK {
		return code, 0
	}
	var c struct{ Count int }
	require.NoError(t, json.Unmarshal([]byte(body), &c))
	return code, c.Count
}

func machinePhase(emu *emulator.Server, id string) string {
	for _, m := range emu.Stats().Machines {
		if m.MachineID == id {
			return string(m.Phase)
		}
	}
	return ""
}

// A worker killed mid-bootstrap and restarted finishes the preview with
// exactly one machine: the retried create finds the first one by its key.
func TestWorkerKilledDuringBootstrap(t *testing.T) {
	s := newStack(t)
	const owner, name, number = "acme", "slow-setup", 3
	slow := strings.Replace(autoSpec, "run: python3 --version", "run: sleep 2 && python3 --version", 1)
	slow = strings.Replace(slow, "autosleep: 2s", "autosleep: 10m", 1)
	s.gh.SetFile(owner, name, "main", ".drydock/preview.yml", slow)
	src := newRepo(t)
	pr := ghfixture.PR{Owner: owner, Repo: name, Number: number, HeadSHA: src.head(), HeadRef: "slow", CloneURL: src.dir}
	id := workflows.PreviewWorkflowID(owner, name, number)
	s.keepHistories(map[string]runMatcher{"preview-lifecycle-worker-killed-during-bootstrap": withID(id)})

	code, out := s.deliver("opened", pr, "slow-opened")
	require.Equal(t, http.StatusAccepted, code, out)
	// Wait until setup (the slow step) is running, then kill the worker.
	require.Eventually(t, func() bool { return s.emu.Stats().Executions >= 2 }, 30*time.Second, 20*time.Millisecond)
	s.stopWorker(syscall.SIGKILL)
	assert.Equal(t, 1, s.emu.Stats().LiveMachines)
	time.Sleep(500 * time.Millisecond)
	s.startWorker()

	st := s.waitFor(id, "ready after the crash", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	stats := s.emu.Stats()
	assert.EqualValues(t, 1, stats.Creates, "exactly one machine")
	assert.Equal(t, 1, stats.LiveMachines)
	assert.Equal(t, "running", machinePhase(s.emu, st.MachineID), "the preview runs on that one machine")
	assert.Equal(t, 1, stats.PreviewsLive, "exactly one preview")
	code, _ = s.get(owner, name, number, "/healthz")
	assert.Equal(t, http.StatusOK, code)

	code, _ = s.deliver("closed", pr, "slow-closed")
	require.Equal(t, http.StatusAccepted, code)
	s.waitClosed(id)
	assert.Equal(t, 0, s.emu.Stats().LiveMachines)
}
