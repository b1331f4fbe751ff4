package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v62/github"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

const secret = "runner-test-secret"

// double stands in for the GitHub double's runner routes: claims answer
// the queued answers in order (then 204), completions are recorded.
type double struct {
	mu        sync.Mutex
	answers   []answer
	claims    int
	jits      []string
	completed map[string]string // job id -> conclusion
}

type answer struct {
	status int
	body   any
}

func (d *double) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/_test/runners/claim":
		d.claims++
		var in struct {
			JIT string `json:"jit_config"`
		}
		_ = json.Unmarshal(b, &in)
		d.jits = append(d.jits, in.JIT)
		if len(d.answers) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		a := d.answers[0]
		d.answers = d.answers[1:]
		w.WriteHeader(a.status)
		if a.body != nil {
			_ = json.NewEncoder(w).Encode(a.body)
		}
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/_test/jobs/") && strings.HasSuffix(r.URL.Path, "/complete"):
		var in struct {
			Conclusion string `json:"conclusion"`
		}
		_ = json.Unmarshal(b, &in)
		if d.completed == nil {
			d.completed = map[string]string{}
		}
		d.completed[strings.Split(r.URL.Path, "/")[3]] = in.Conclusion
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"job":{}}`))
	default:
		http.NotFound(w, r)
	}
}

// webhook is Drydock's real signed endpoint with a recording router; fail
// makes the first deliveries fail (503) or be refused.
type webhook struct {
	mu     sync.Mutex
	events []intake.Event
	fail   []error // popped per delivery; a nil entry accepts
}

func (wh *webhook) Route(_ context.Context, ev intake.Event) (intake.Result, error) {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	wh.events = append(wh.events, ev)
	if len(wh.fail) > 0 {
		err := wh.fail[0]
		wh.fail = wh.fail[1:]
		if errors.Is(err, errBadRequest) {
			return intake.Result{Status: http.StatusBadRequest, Reason: "refused"}, nil
		}
		if err != nil {
			return intake.Result{}, err
		}
	}
	return intake.Result{Status: http.StatusAccepted, Reason: "ok", Accepted: true}, nil
}

var errBadRequest = errors.New("400")

type stack struct {
	gh    *double
	wh    *webhook
	ghURL string
	whURL string
}

func newStack(t *testing.T, answers ...answer) *stack {
	t.Helper()
	s := &stack{gh: &double{answers: answers}, wh: &webhook{}}
	gh := httptest.NewServer(s.gh)
	t.Cleanup(gh.Close)
	s.ghURL, s.whURL = gh.URL, newWebhookServer(t, s.wh)
	return s
}

// newWebhookServer serves Drydock's webhook intake (signed with secret,
// every owner allowed), routing deliveries to wh; it returns its URL.
func newWebhookServer(t *testing.T, wh *webhook) string {
	t.Helper()
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: wh, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	whSrv := httptest.NewServer(h)
	t.Cleanup(whSrv.Close)
	return whSrv.URL
}

func (s *stack) run(t *testing.T, jit string, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"-github", s.ghURL, "-webhook", s.whURL, "-secret", secret,
		"-wait", "2s", "-poll", "10ms"}, extra...)
	var stderr bytes.Buffer
	env := func(k string) string {
		if k == "ACTIONS_RUNNER_INPUT_JITCONFIG" {
			return jit
		}
		return ""
	}
	code := run(context.Background(), args, env, &stderr)
	return code, stderr.String()
}

func encode(v any) string {
	b, _ := json.Marshal(v)
	return base64.StdEncoding.EncodeToString(b)
}

// The double's shapes: runner_name and scope in the JIT config; duration
// and planned conclusion beside GitHub's job object.
func TestRunsOneJobAndReportsIt(t *testing.T) {
	created := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	s := newStack(t,
		answer{status: http.StatusNoContent},
		answer{status: http.StatusServiceUnavailable}, // a blip: claim again
		answer{status: http.StatusOK, body: map[string]any{
			"job": map[string]any{"id": 42, "run_id": 7, "name": "build", "labels": []string{"self-hosted", "linux"},
				"run_url": "http://127.0.0.1:1/api/v3/repos/acme/shop/actions/runs/7", "workflow_name": "CI",
				"runner_name": "drydock-ci-42-1", "created_at": created},
			"duration_ms": 150, "conclusion": "failure",
		}})
	s.wh.fail = []error{errors.New("temporal down")} // in_progress is retried
	jit := encode(map[string]any{"kind": "drydock-githubtest-jit", "runner_id": 3, "runner_name": "drydock-ci-42-1",
		"scope": map[string]string{"kind": "org", "org": "acme"}})

	start := time.Now()
	code, log := s.run(t, jit, "-installation-id", "9")
	require.Equal(t, 0, code, log)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "ran for the job's duration")
	assert.Equal(t, 3, s.gh.claims)
	for _, j := range s.gh.jits {
		assert.Equal(t, jit, j, "claims carry the JIT config")
	}
	assert.Equal(t, map[string]string{"42": "failure"}, s.gh.completed, "the planned conclusion")

	require.Len(t, s.wh.events, 3, "in_progress twice (one retry), completed once")
	assert.Equal(t, s.wh.events[0].DeliveryID, s.wh.events[1].DeliveryID, "a retry keeps its delivery ID")
	assert.NotEqual(t, s.wh.events[1].DeliveryID, s.wh.events[2].DeliveryID, "each delivery gets its own ID")
	for i, want := range []string{"in_progress", "in_progress", "completed"} {
		ev := s.wh.events[i]
		assert.Equal(t, "workflow_job", ev.Name)
		got, err := intake.DecodeWorkflowJob(ev.Payload, ev.DeliveryID)
		require.NoError(t, err)
		assert.Equal(t, runnerapi.WorkflowJobEvent{
			DeliveryID: ev.DeliveryID, Action: want, JobID: 42, RunID: 7, Name: "build", WorkflowName: "CI",
			Owner: "acme", Repo: "shop", Org: "acme", Labels: []string{"self-hosted", "linux"},
			RunnerName: "drydock-ci-42-1", Conclusion: map[string]string{"completed": "failure"}[want],
			CreatedAt: created, StartedAt: got.StartedAt, InstallationID: 9,
		}, got)
		// The runner picked the job up when it claimed it (GitHub's started_at).
		assert.WithinDuration(t, start, got.StartedAt, 2*time.Second, "started_at is when the runner took the job")
		if i > 0 {
			var first github.WorkflowJobEvent
			require.NoError(t, json.Unmarshal(s.wh.events[0].Payload, &first))
			assert.Equal(t, first.GetWorkflowJob().GetStartedAt().Time, got.StartedAt, "every delivery says the same started_at")
		}
	}
}

// The brief's shapes: name in the JIT config; owner, repo and duration in
// the job. -conclusion overrides.
func TestJobShapeWithOwnerAndDuration(t *testing.T) {
	s := newStack(t, answer{status: http.StatusOK, body: map[string]any{
		"job": map[string]any{"id": 5, "run_id": 6, "name": "test", "labels": []string{"self-hosted"}, "duration_ms": 20,
			"owner": "alice", "repo": "dots"},
	}})
	code, log := s.run(t, encode(map[string]string{"name": "drydock-solo-5-1"}), "-name", "ignored", "-conclusion", "success")
	require.Equal(t, 0, code, log)
	assert.Equal(t, map[string]string{"5": "success"}, s.gh.completed)
	require.Len(t, s.wh.events, 2)
	got, err := intake.DecodeWorkflowJob(s.wh.events[1].Payload, "")
	require.NoError(t, err)
	assert.Equal(t, "alice", got.Owner)
	assert.Equal(t, "dots", got.Repo)
	assert.Empty(t, got.Org)
	assert.Equal(t, "drydock-solo-5-1", got.RunnerName)
	assert.Equal(t, "success", got.Conclusion)
}

func TestNameFlagWhenTheConfigIsOpaque(t *testing.T) {
	s := newStack(t, answer{status: http.StatusOK, body: map[string]any{
		"job": map[string]any{"id": 5, "run_id": 6, "name": "test", "labels": []string{"self-hosted"}, "owner": "alice", "repo": "dots"},
	}})
	code, log := s.run(t, "opaque!", "-name", "drydock-solo-5-1")
	require.Equal(t, 0, code, log)
	var we github.WorkflowJobEvent
	require.NoError(t, json.Unmarshal(s.wh.events[0].Payload, &we))
	assert.Equal(t, "drydock-solo-5-1", we.GetWorkflowJob().GetRunnerName())
}

func TestNoJobWithinWaitExitsCleanly(t *testing.T) {
	s := newStack(t)
	start := time.Now()
	code, log := s.run(t, encode(map[string]string{"name": "r"}), "-wait", "150ms")
	assert.Equal(t, 0, code, log)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Greater(t, s.gh.claims, 2, "polled")
	assert.Empty(t, s.wh.events)
	assert.Contains(t, log, "no job")
}

func TestRefusedOrUnreachable(t *testing.T) {
	s := newStack(t, answer{status: http.StatusConflict, body: map[string]string{"message": "JIT config already used"}})
	code, log := s.run(t, encode(map[string]string{"name": "r"}))
	assert.Equal(t, 1, code)
	assert.Contains(t, log, "JIT config already used")
	assert.Equal(t, 1, s.gh.claims, "a refusal is final")

	s = newStack(t)
	s.ghURL = "http://127.0.0.1:1"
	code, _ = s.run(t, encode(map[string]string{"name": "r"}), "-wait", "100ms")
	assert.Equal(t, 1, code, "an unreachable double is not an idle runner")
}

// A refused delivery is not retried; the job still completes.
func TestRefusedDeliveryFailsTheRun(t *testing.T) {
	s := newStack(t, answer{status: http.StatusOK, body: map[string]any{
		"job": map[string]any{"id": 5, "run_id": 6, "name": "test", "labels": []string{"self-hosted"}, "owner": "alice", "repo": "dots"},
	}})
	s.wh.fail = []error{errBadRequest}
	code, _ := s.run(t, encode(map[string]string{"name": "r"}))
	assert.Equal(t, 1, code)
	assert.Len(t, s.wh.events, 2, "in_progress once, completed once")
	assert.Equal(t, map[string]string{"5": "success"}, s.gh.completed)
}

func TestUsage(t *testing.T) {
	s := newStack(t)
	for _, tc := range []struct {
		jit  string
		args []string
		want string
	}{
		{encode(map[string]string{"name": "r"}), []string{"-github", ""}, "-github is required"},
		{encode(map[string]string{"name": "r"}), []string{"-webhook", "ftp://x"}, "is not an http(s) URL"},
		{encode(map[string]string{"name": "r"}), []string{"stray"}, "unexpected arguments"},
		{"", nil, "neither -jitconfig nor ACTIONS_RUNNER_INPUT_JITCONFIG is set"},
		{"%%%", nil, "not base64"},
	} {
		code, log := s.run(t, tc.jit, tc.args...)
		assert.Equal(t, 2, code, tc.want)
		assert.Contains(t, log, tc.want)
	}
	o, err := parse([]string{"-github", "http://gh/", "-webhook", "http://127.0.0.1:8080"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "http://gh", o.github)
	assert.Equal(t, "http://127.0.0.1:8080/webhooks/github", o.webhook)
	assert.Equal(t, 30*time.Second, o.wait)
}

// Persistent mode against the real GitHub double: -configure is
// config.sh (a registration token makes a runner and its config file), and
// -persistent is the service that takes job after job, reporting the
// machine it runs on.
func TestPersistentRunnerTakesJobAfterJob(t *testing.T) {
	gh := githubtest.New(t)
	gh.AddOrg("acme")
	gh.AddRepo("acme", "shop")
	gh.AddToken("tok", "bot")
	tok := "tok"
	labels := []string{"self-hosted", "linux"}
	jobs := []githubtest.Job{
		gh.AddJob("acme", "shop", githubtest.Job{Labels: labels, Duration: 20 * time.Millisecond}),
		gh.AddJob("acme", "shop", githubtest.Job{Labels: labels, Duration: 20 * time.Millisecond}),
	}
	regTok := registrationToken(t, gh, tok, "acme")

	wh := &webhook{}
	cfgFile := filepath.Join(t.TempDir(), ".runner")
	common := []string{"-github", gh.URL(), "-webhook", newWebhookServer(t, wh), "-secret", secret, "-poll", "10ms"}
	env := func(k string) string {
		return map[string]string{"DEDALUS_MACHINE_ID": "dm-7", "ACTIONS_RUNNER_INPUT_TOKEN": regTok}[k]
	}

	var stderr bytes.Buffer
	code := run(context.Background(), append(common, "-configure", "-token", "forged", "-name", "drydock-p-dm-7", "-labels", "self-hosted,linux", "-config-file", cfgFile), env, &stderr)
	assert.Equal(t, 1, code, "a token GitHub did not issue is refused")
	code = run(context.Background(), append(common, "-configure", "--unattended", "--url", "https://github.com/acme", "--work", "_work", "--replace", "-name", "drydock-p-dm-7", "-labels", "self-hosted,linux", "-config-file", cfgFile), env, &stderr)
	require.Equal(t, 0, code, stderr.String())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, append(common, "-persistent", cfgFile), env, &stderr) }()
	require.Eventually(t, func() bool {
		wh.mu.Lock()
		defer wh.mu.Unlock()
		return len(wh.events) == 4 // in_progress and completed for each job
	}, 10*time.Second, 10*time.Millisecond, "both jobs run on the one persistent runner")
	cancel()
	assert.Equal(t, 0, <-done)

	rs := gh.Runners(pools.Scope{Kind: pools.ScopeOrg, Org: "acme"})
	require.Len(t, rs, 1, "the runner stays registered")
	assert.False(t, rs[0].Ephemeral)
	assert.Equal(t, "dm-7", rs[0].MachineID)
	for _, j := range jobs {
		got, _ := gh.Job(j.ID)
		assert.Equal(t, "drydock-p-dm-7", got.RunnerName)
	}
	for _, j := range jobs {
		got, _ := gh.Job(j.ID)
		assert.Equal(t, githubtest.JobCompleted, got.Status)
	}
}

// registrationToken asks the GitHub double, as the user of tok, for a
// runner registration token of org.
func registrationToken(t *testing.T, gh *githubtest.Server, tok, org string) string {
	t.Helper()
	req, err := http.NewRequest("POST", gh.URL()+"orgs/"+org+"/actions/runners/registration-token", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "token "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var regTok struct{ Token string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&regTok))
	resp.Body.Close()
	return regTok.Token
}

// Like actions/runner, the stand-in takes its inputs from the environment
// and removes them before it runs a job step: the step's recorded
// environment has neither the JIT config nor any ACTIONS_RUNNER_INPUT_*.
func TestJobStepDoesNotInheritRunnerInputs(t *testing.T) {
	jit := encode(map[string]string{"name": "drydock-solo-8-1", "secret": "jit-secret-4711"})
	t.Setenv("ACTIONS_RUNNER_INPUT_JITCONFIG", jit)
	t.Setenv("ACTIONS_RUNNER_INPUT_TOKEN", "reg-secret-4712")
	t.Setenv("UNRELATED_VAR", "kept")
	inputs := takeInputs()
	assert.Equal(t, jit, inputs["ACTIONS_RUNNER_INPUT_JITCONFIG"])
	assert.Equal(t, "reg-secret-4712", inputs["ACTIONS_RUNNER_INPUT_TOKEN"])
	_, set := os.LookupEnv("ACTIONS_RUNNER_INPUT_JITCONFIG")
	assert.False(t, set, "removed from the process environment")

	s := newStack(t, answer{status: http.StatusOK, body: map[string]any{
		"job": map[string]any{"id": 8, "run_id": 9, "name": "test", "labels": []string{"self-hosted"}, "duration_ms": 20,
			"owner": "alice", "repo": "dots"},
	}})
	dir := t.TempDir()
	code, log := s.run(t, inputs["ACTIONS_RUNNER_INPUT_JITCONFIG"], "-step-env-dir", dir)
	require.Equal(t, 0, code, log)
	env, err := os.ReadFile(filepath.Join(dir, "job-8.env"))
	require.NoError(t, err, "the step recorded its environment")
	assert.Contains(t, string(env), "UNRELATED_VAR=kept", "the step inherits the runner's environment")
	assert.NotContains(t, string(env), "jit-secret-4711")
	assert.NotContains(t, string(env), jit)
	assert.NotContains(t, string(env), "reg-secret-4712")
	assert.NotContains(t, string(env), "ACTIONS_RUNNER_INPUT_")
}
