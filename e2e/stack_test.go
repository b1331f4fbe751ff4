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
	s.emu = startEmulator(t, 0)
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
	handler = s.webhookHandler(poolCfg)
	s.router = startRouter(t, s.tc)

	s.workerE = s.workerEnv(runnerPools)
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

// startEmulator starts a Dedalus emulator that t's end closes, with a
// quota of maxMachines (0: none).
func startEmulator(t *testing.T, maxMachines int) *emulator.Server {
	t.Helper()
	emu, err := emulator.New(emulator.Config{
		Addr: "127.0.0.1:0", BootDelay: 200 * time.Millisecond, WakeDelay: 300 * time.Millisecond,
		SleepDelay: 50 * time.Millisecond, Seed: 3, MaxMachines: maxMachines,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	require.NoError(t, emu.Start())
	t.Cleanup(func() { _ = emu.Close(context.Background()) })
	return emu
}

// webhookHandler is the stack's webhook handler: pull requests start previews,
// workflow jobs go to the runner pools of poolCfg.
func (s *stack) webhookHandler(poolCfg *pools.Config) http.Handler {
	t := s.t
	t.Helper()
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
	return h
}

// startRouter serves a preview router, until t's end.
func startRouter(t *testing.T, tc client.Client) *httptest.Server {
	t.Helper()
	rt, err := router.New(router.Options{
		Domain: domain, Waker: router.NewTemporalWaker(tc),
		WakeTimeout: 30 * time.Second, AwakeTTL: time.Second, TouchEvery: time.Minute,
	})
	require.NoError(t, err)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return srv
}

// workerEnv is the worker's environment on the stack, with runnerPools as
// RUNNER_POOLS.
func (s *stack) workerEnv(runnerPools string) []string {
	return append(os.Environ(),
		"TEMPORAL_ADDRESS="+temporalAddr, "TEMPORAL_NAMESPACE="+temporalNamespace,
		"DEDALUS_BASE_URL="+s.emu.URL(), "DEDALUS_API_KEY="+s.emu.APIKey(),
		"GITHUB_TOKEN="+ghToken, "GITHUB_API_URL="+s.gh.URL(),
		"PREVIEW_PUBLIC_URL=http://pr-{number}--{owner}--{repo}."+domain+":8090",
		"RUNNER_POOLS="+runnerPools,
		"LOG_LEVEL=warn", "WORKER_METRICS_ADDR=127.0.0.1:0",
		// Wakes refresh the PR comment at once, so the recorded histories cover it.
		"PREVIEW_AWAKE_REPORT_EVERY=1s",
		// Previews are public here; tests of the router's login set another.
		"PREVIEW_VISIBILITY=public",
	)
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
