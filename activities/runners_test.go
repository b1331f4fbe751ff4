package activities_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

var runnerScope = pools.Scope{Kind: pools.ScopeRepo, Repo: ghOwner + "/" + ghRepo}

// testPool is a pool whose install and runner are stand-ins: the install
// writes a file; the runner command writes its pid and JIT config to files
// and then keeps running, as a real runner waiting for a job does.
func testPool() pools.Pool {
	return pools.Pool{
		Name: "ci", Labels: []string{"self-hosted", "drydock"}, Scope: runnerScope, RunnerVersion: "2.321.0",
		Mode: pools.ModeJIT, RunnerGroupID: 1,
		Setup: []previewspec.Step{
			{Name: "toolchain", Run: `echo "setup $DRYDOCK_POOL $DRYDOCK_RUNNER_VERSION" >> "$HOME/setup.log"`},
			{Command: []string{"sh", "-c", `echo second >> "$HOME/setup.log"`}},
		},
		Install:       &previewspec.Step{Run: `mkdir -p $HOME/actions-runner && echo ok > $HOME/actions-runner/installed`},
		RunnerCommand: []string{"sh", "-c", `id -un > "$HOME/runner.user"; grep ^NoNewPrivs: /proc/self/status > "$HOME/runner.nnp"; echo $$ > "$HOME/runner.pid"; readlink /proc/self/ns/pid > "$HOME/runner.pidns"; echo "$ACTIONS_RUNNER_INPUT_JITCONFIG" > "$HOME/jit"; exec sleep 60`},
	}
}

type runnerRig struct {
	a       *activities.Runners
	env     *testsuite.TestActivityEnvironment
	logs    *syncBuffer
	srv     *githubtest.Server
	dedalus *dedalus.Client
	machine string
}

// newRunnerRig starts the emulator with one running machine and the GitHub
// double, and registers the runner activities (with GitHub unless local).
func newRunnerRig(t *testing.T, local bool, mod func(*pools.Pool)) *runnerRig {
	t.Helper()
	_, c := startEmulator(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.CreateMachine(ctx, dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 5}, "runner-test-"+t.Name())
	require.NoError(t, err)
	_, err = c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseRunning)
	require.NoError(t, err)

	srv := githubtest.New(t)
	var clients *gh.Clients
	if !local {
		clients = tokenClients(t, srv)
	}
	p := testPool()
	if mod != nil {
		mod(&p)
	}
	logs := &syncBuffer{}
	a := &activities.Runners{
		Machines: &activities.Machines{Client: c, HeartbeatEvery: 200 * time.Millisecond},
		GitHub:   clients,
		Pools:    &pools.Config{Pools: []pools.Pool{p}},
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	env.RegisterActivity(a.Machines)
	return &runnerRig{a: a, env: env, logs: logs, srv: srv, dedalus: c, machine: m.MachineID}
}

// sh runs a script on the rig's machine and returns its stdout.
func (r *runnerRig) sh(t *testing.T, script string) string {
	t.Helper()
	v, err := r.env.ExecuteActivity(r.a.Machines.RunCommand, activities.Command{MachineID: r.machine, Name: "probe", Argv: []string{"sh", "-c", script}, KeepOutput: true})
	require.NoError(t, err)
	var res activities.CommandResult
	require.NoError(t, v.Get(&res))
	return res.StdoutTail
}

// waitFile waits for a file on the machine and returns its content.
func (r *runnerRig) waitFile(t *testing.T, path string) string {
	t.Helper()
	var out string
	if !assert.Eventually(t, func() bool {
		out = r.sh(t, `cat "`+path+`" 2>/dev/null || true`)
		return out != ""
	}, 10*time.Second, 50*time.Millisecond, "%s never appeared", path) {
		t.Fatalf("the machine's runner logs:\n%s", r.sh(t, `tail -n 20 "$HOME"/.drydock/runner-*.log 2>&1 || true`))
	}
	return out
}

// argvs lists the argv of every execution the machine ran.
func (r *runnerRig) argvs(t *testing.T) string {
	t.Helper()
	page, err := r.dedalus.ListExecutions(context.Background(), r.machine, dedalus.ListOptions{Limit: 100})
	require.NoError(t, err)
	var b strings.Builder
	for _, e := range page.Items {
		fmt.Fprintln(&b, strings.Join(e.Command, " "), e.EnvKeys)
	}
	return b.String()
}

func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "want an application error, got %v", err)
	return ae
}

func TestRunnerSetupMachineRunsOnceThenSkips(t *testing.T) {
	r := newRunnerRig(t, true, nil) // setup needs no GitHub
	in := activities.SetupMachineInput{Pool: "ci", MachineID: r.machine}
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, in)
	require.NoError(t, err)
	assert.Equal(t, "setup ci 2.321.0\nsecond\n", r.sh(t, `cat "$HOME/setup.log"`))
	assert.Equal(t, "ok\n", r.sh(t, `cat "$HOME/actions-runner/installed"`))
	assert.NotEmpty(t, r.sh(t, `cat "$HOME/.drydock/runner-2.321.0.installed"`))

	// A second call finds the marker: nothing runs again.
	_, err = r.env.ExecuteActivity(r.a.SetupMachine, in)
	require.NoError(t, err)
	assert.Equal(t, "setup ci 2.321.0\nsecond\n", r.sh(t, `cat "$HOME/setup.log"`))
	assert.Contains(t, r.logs.String(), "runner machine already set up")

	_, err = r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "nope", MachineID: r.machine})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeUnknownPool, ae.Type())
	assert.True(t, ae.NonRetryable())
}

// A machine is set up with the configuration it was created with (its size
// came from it), even when the worker's RUNNER_POOLS has changed since.
func TestRunnerSetupFollowsTheConfigurationTheMachineWasCreatedWith(t *testing.T) {
	r := newRunnerRig(t, true, nil) // the worker's configuration: testPool's setup
	created := testPool()
	created.Setup = []previewspec.Step{{Name: "as created", Run: `echo "created with v1" >> "$HOME/setup.log"`}}
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine, Config: &created})
	require.NoError(t, err)
	assert.Equal(t, "created with v1\n", r.sh(t, `cat "$HOME/setup.log"`), "the steps of the configuration the machine was created with, only")

	other := testPool()
	other.Name = "other"
	_, err = r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine, Config: &other})
	ae := appError(t, err)
	assert.True(t, ae.NonRetryable(), "another pool's configuration is refused")
}

func TestRunnerSetupMachineFailingStep(t *testing.T) {
	r := newRunnerRig(t, true, func(p *pools.Pool) {
		p.Setup = []previewspec.Step{{Name: "toolchain", Run: `echo fetching; echo "E: no such package" >&2; exit 3`}}
	})
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeCommandFailed, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.Contains(t, ae.Error(), "setup: toolchain")
	var res activities.CommandResult
	require.NoError(t, ae.Details(&res))
	assert.EqualValues(t, 3, res.ExitCode)
	assert.Equal(t, "E: no such package\n", res.StderrTail)
	assert.Equal(t, "", r.sh(t, `ls "$HOME/.drydock" 2>/dev/null || true`), "no marker after a failure")
}

// The default install downloads actions/runner with curl; a curl on PATH
// that serves a stand-in tarball shows what it asks for and that the
// archive is unpacked into $HOME/actions-runner.
func TestRunnerSetupMachineDefaultInstall(t *testing.T) {
	dir := t.TempDir()
	tarball := filepath.Join(dir, "runner.tar.gz")
	writeTarball(t, tarball, map[string]string{"run.sh": "#!/bin/sh\necho run\n", "bin/Runner.Listener": "x"})
	curlLog := filepath.Join(dir, "curl.log")
	stub := fmt.Sprintf(`#!/bin/sh
out=""; url=""
while [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift 2 ;; -*) shift ;; *) url="$1"; shift ;; esac; done
echo "$url" >> %q
cp %q "$out"
`, curlLog, tarball)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "curl"), []byte(stub), 0o755))
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH")) // executions inherit the emulator's PATH

	r := newRunnerRig(t, true, func(p *pools.Pool) { p.Setup, p.Install, p.RunnerVersion = nil, nil, "" })
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	arch := map[string]string{"arm64": "arm64"}[runtime.GOARCH]
	if arch == "" {
		arch = "x64"
	}
	v := pools.DefaultRunnerVersion
	b, err := os.ReadFile(curlLog)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("https://github.com/actions/runner/releases/download/v%s/actions-runner-linux-%s-%s.tar.gz\n", v, arch, v), string(b))
	assert.Equal(t, "run.sh\n", r.sh(t, `cd "$HOME/actions-runner" && ls *.sh && ls *.part 2>/dev/null || true`), "unpacked, download removed")
	assert.NotEmpty(t, r.sh(t, `cat "$HOME/.drydock/runner-`+v+`.installed"`))

	// Installed: a second call downloads nothing.
	_, err = r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	b, err = os.ReadFile(curlLog)
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(b), "\n"))
}

func writeTarball(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "./" + name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(content))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

func jitRunner(t *testing.T, r *runnerRig, name string) githubtest.Runner {
	t.Helper()
	for _, x := range r.srv.Runners(runnerScope) {
		if x.Name == name {
			return x
		}
	}
	t.Fatalf("no runner %s", name)
	return githubtest.Runner{}
}

func TestRunnerStartJITRunnerDetachedWithSecretInEnvOnly(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	name := runnerapi.RunnerName("ci", 77, 1)
	started := time.Now()
	_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 77})
	require.NoError(t, err)
	assert.Less(t, time.Since(started), 30*time.Second, "the activity does not wait for the runner")

	config := strings.TrimSpace(r.waitFile(t, "/home/runner/jit"))
	// Still running after the execution that started it ended, in a
	// session of its own, as the first process of a PID namespace of its
	// own (whatever its job leaves dies with it).
	r.waitFile(t, "/home/runner/runner.pidns")
	assert.Equal(t, "1\n", r.sh(t, `cat "/home/runner/runner.pid"`), "the runner is PID 1 of its namespace")
	assert.Equal(t, activities.RunnerUser+"\n", r.sh(t, `cat /home/runner/runner.user`), "the runner runs as the runner user")
	assert.Equal(t, "NoNewPrivs:\t1\n", r.sh(t, `cat /home/runner/runner.nnp`), "with no new privileges (no sudo, no setuid)")
	assert.Equal(t, "700\n", r.sh(t, `stat -c %a "$HOME/.drydock"`), "Drydock's state is root's alone")
	assert.Equal(t, "alive own-namespace own-session\n", r.sh(t, `ns=$(cat "/home/runner/runner.pidns")
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] || continue
  kill -0 "${p#/proc/}" && printf alive && break
done
[ "$ns" != "$(readlink /proc/self/ns/pid)" ] && printf " own-namespace"
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] || continue
  sid=$(sed 's/^.*) //' "$p/stat" | cut -d' ' -f4)
  [ "$sid" != "$(sed 's/^.*) //' /proc/self/stat | cut -d' ' -f4)" ] && echo " own-session" && break
done`))
	cfg, err := githubtest.DecodeJITConfig(config)
	require.NoError(t, err, "the runner got the encoded config GitHub issued")
	reg := jitRunner(t, r, name)
	assert.Equal(t, reg.ID, cfg.RunnerID)
	assert.Equal(t, []string{"self-hosted", "drydock"}, reg.Labels)
	assert.EqualValues(t, 1, reg.GroupID)
	assert.Equal(t, "offline", reg.Status, "registered; the stand-in never connects")
	assert.Equal(t, "", r.sh(t, `cat "$HOME/.drydock/runner-`+name+`.log"`), "the runner's output goes to its log")

	// The config is a credential: in no log line, and in no argv (only the
	// names of the environment variables are recorded).
	assert.NotContains(t, r.logs.String(), config)
	assert.Contains(t, r.logs.String(), "JIT runner started")
	argvs := r.argvs(t)
	assert.NotContains(t, argvs, config)
	assert.Contains(t, argvs, "ACTIONS_RUNNER_INPUT_JITCONFIG")
	// Nor in the runner's own argv (what ps shows on the machine).
	assert.NotContains(t, r.sh(t, `tr '\0' ' ' < "/proc/$(cat "/home/runner/runner.pid")/cmdline"`), config)

	// The stand-in runner connects and takes a job: the runner is online.
	r.srv.AddJob(ghOwner, ghRepo, githubtest.Job{ID: 77, Labels: []string{"drydock"}})
	b, _ := json.Marshal(map[string]string{"jit_config": config})
	resp, err := http.Post(cfg.URL+"/_test/runners/claim", "application/json", bytes.NewReader(b))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// A retry of the same activity (the worker crashed after the runner
	// started) finds the name taken by a connected runner: done, nothing new.
	r.srv.ResetRequests()
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 77})
	require.NoError(t, err)
	assert.Equal(t, 1, r.srv.Count(githubtest.RouteGenerateRepoJITConfig))
	assert.Equal(t, 0, r.srv.Count(githubtest.RouteDeleteRepoRunner))
	assert.Len(t, r.srv.Runners(runnerScope), 1)
	assert.Contains(t, r.logs.String(), "a previous attempt started it")
}

// A retry whose earlier attempt started the runner, which has since run a
// job and deregistered (freeing its name), starts no second runner: the
// name is one job attempt's, and a second runner under it would take
// another job on a machine the pool believes free. (Found by make chaos: a
// 503 on the start command's output after the runner had started.)
func TestRunnerStartJITRunnerRetryAfterTheRunnerRanAndLeft(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	name := runnerapi.RunnerName("ci", 79, 1)
	_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 79})
	require.NoError(t, err)
	first := strings.TrimSpace(r.waitFile(t, "/home/runner/jit"))
	pid := r.sh(t, `cat "/home/runner/runner.pidns"`)

	// The runner ran its job and deregistered itself, as a JIT runner does.
	api, err := r.a.GitHub.API(0)
	require.NoError(t, err)
	require.NoError(t, api.RemoveRunner(context.Background(), runnerScope, jitRunner(t, r, name).ID))

	r.srv.ResetRequests()
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 79})
	require.NoError(t, err)
	assert.Equal(t, first, strings.TrimSpace(r.sh(t, `cat "/home/runner/jit"`)), "no second runner got a config")
	assert.Equal(t, pid, r.sh(t, `cat "/home/runner/runner.pidns"`), "no second runner process")
	assert.Empty(t, r.srv.Runners(runnerScope), "the registration the retry made was removed")
	assert.Equal(t, 1, r.srv.Count(githubtest.RouteDeleteRepoRunner))
	assert.Contains(t, r.logs.String(), "a previous attempt started it")
}

func TestRunnerStartJITRunnerReplacesStaleOfflineRegistration(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	name := runnerapi.RunnerName("ci", 78, 1)
	// A previous attempt registered the name, then died before its runner connected.
	api, err := r.a.GitHub.API(0)
	require.NoError(t, err)
	stale, staleID, err := api.GenerateJITConfig(context.Background(), runnerScope, name, []string{"drydock"}, 1)
	require.NoError(t, err)

	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 78})
	require.NoError(t, err)
	config := strings.TrimSpace(r.waitFile(t, "/home/runner/jit"))
	assert.NotEqual(t, stale, config)
	reg := jitRunner(t, r, name)
	assert.NotEqual(t, staleID, reg.ID, "registered afresh")
	cfg, err := githubtest.DecodeJITConfig(config)
	require.NoError(t, err)
	assert.Equal(t, reg.ID, cfg.RunnerID)
	assert.Len(t, r.srv.Runners(runnerScope), 1)
	assert.Equal(t, 1, r.srv.Count(githubtest.RouteDeleteRepoRunner))
	assert.NotContains(t, r.logs.String(), config)
	assert.NotContains(t, r.argvs(t), config)
}

// A runner_command written for the old contract (--jitconfig
// "$DRYDOCK_JIT_CONFIG") would start a runner with an empty config: it is
// refused, at worker start and by the activity, naming the replacement.
func TestRunnerCommandStillUsingDrydockJITConfigIsRefused(t *testing.T) {
	old := testPool()
	old.RunnerCommand = []string{"sh", "-c", `exec "$HOME/actions-runner/run.sh" --jitconfig "$DRYDOCK_JIT_CONFIG"`}
	err := activities.CheckRunnerCommand(&old)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pool ci: runner_command uses $DRYDOCK_JIT_CONFIG")
	assert.Contains(t, err.Error(), "ACTIONS_RUNNER_INPUT_JITCONFIG")
	require.Error(t, activities.CheckRunnerCommands(&pools.Config{Pools: []pools.Pool{testPool(), old}}))
	require.NoError(t, activities.CheckRunnerCommands(&pools.Config{Pools: []pools.Pool{testPool(), {Name: "default"}}}))

	r := newRunnerRig(t, false, func(p *pools.Pool) { p.RunnerCommand = old.RunnerCommand })
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-1-1"})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeInvalidArgument, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.Equal(t, 0, r.srv.Count(githubtest.RouteGenerateRepoJITConfig), "no runner registered")
}

func TestRunnerStartJITRunnerErrors(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	for _, tc := range []struct {
		in   activities.StartRunnerInput
		typ  string
		desc string
	}{
		{activities.StartRunnerInput{Pool: "nope", MachineID: r.machine, RunnerName: "drydock-x"}, activities.ErrTypeUnknownPool, "unknown pool"},
		{activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: "../etc"}, activities.ErrTypeInvalidArgument, "bad name"},
		{activities.StartRunnerInput{Pool: "ci", RunnerName: "drydock-x"}, activities.ErrTypeInvalidArgument, "no machine"},
	} {
		_, err := r.env.ExecuteActivity(r.a.StartJITRunner, tc.in)
		ae := appError(t, err)
		assert.Equal(t, tc.typ, ae.Type(), tc.desc)
		assert.True(t, ae.NonRetryable(), tc.desc)
	}
	// GitHub unavailable: retryable.
	r.srv.FailNext(githubtest.RouteGenerateRepoJITConfig, 1, githubtest.BadGateway())
	_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-1-1"})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeGitHubUnavailable, ae.Type())
	assert.False(t, ae.NonRetryable())
}

func TestRunnerRemoveRunner(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	api, err := r.a.GitHub.API(0)
	require.NoError(t, err)
	remove := func(name string) activities.RemoveRunnerResult {
		t.Helper()
		v, err := r.env.ExecuteActivity(r.a.RemoveRunner, activities.RemoveRunnerInput{Pool: "ci", RunnerName: name})
		require.NoError(t, err)
		var res activities.RemoveRunnerResult
		require.NoError(t, v.Get(&res))
		return res
	}
	assert.Equal(t, activities.RemoveRunnerResult{NotFound: true}, remove("drydock-ci-1-1"))

	_, _, err = api.GenerateJITConfig(context.Background(), runnerScope, "drydock-ci-1-1", []string{"drydock"}, 1)
	require.NoError(t, err)
	assert.Equal(t, activities.RemoveRunnerResult{Removed: true}, remove("drydock-ci-1-1"))
	assert.Empty(t, r.srv.Runners(runnerScope))

	// A runner running a job is refused by GitHub: Busy, not an error.
	r.srv.AddJob(ghOwner, ghRepo, githubtest.Job{ID: 5, Labels: []string{"drydock"}})
	busy, _, err := api.GenerateJITConfig(context.Background(), runnerScope, "drydock-ci-5-1", []string{"drydock"}, 1)
	require.NoError(t, err)
	b, _ := json.Marshal(map[string]string{"jit_config": busy})
	resp, err := http.Post(r.srv.URL()+"_test/runners/claim", "application/json", bytes.NewReader(b))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, activities.RemoveRunnerResult{Busy: true}, remove("drydock-ci-5-1"))
	assert.Len(t, r.srv.Runners(runnerScope), 1)
}

func TestRunnerJobStatus(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	r.srv.AddJob(ghOwner, ghRepo, githubtest.Job{ID: 9001, Labels: []string{"drydock"}})
	status := func() activities.JobStatusResult {
		t.Helper()
		v, err := r.env.ExecuteActivity(r.a.JobStatus, activities.JobStatusInput{Owner: ghOwner, Repo: ghRepo, JobID: 9001})
		require.NoError(t, err)
		var res activities.JobStatusResult
		require.NoError(t, v.Get(&res))
		return res
	}
	assert.Equal(t, activities.JobStatusResult{Status: "queued"}, status())
	r.srv.CancelJob(9001)
	assert.Equal(t, activities.JobStatusResult{Status: "completed", Conclusion: "cancelled"}, status())

	_, err := r.env.ExecuteActivity(r.a.JobStatus, activities.JobStatusInput{Owner: ghOwner, Repo: ghRepo, JobID: 1})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeGitHubRejected, ae.Type(), "an unknown job is a 404")
	assert.True(t, ae.NonRetryable())
}

func TestRunnerActivitiesNeedGitHub(t *testing.T) {
	r := newRunnerRig(t, true, nil)
	for name, run := range map[string]func() error{
		"StartJITRunner": func() error {
			_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-1-1"})
			return err
		},
		"RegisterPersistent": func() error {
			_, err := r.env.ExecuteActivity(r.a.RegisterPersistent, activities.RegisterInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-m1"})
			return err
		},
		"RemoveRunner": func() error {
			_, err := r.env.ExecuteActivity(r.a.RemoveRunner, activities.RemoveRunnerInput{Pool: "ci", RunnerName: "drydock-ci-1-1"})
			return err
		},
		"JobStatus": func() error {
			_, err := r.env.ExecuteActivity(r.a.JobStatus, activities.JobStatusInput{Owner: ghOwner, Repo: ghRepo, JobID: 1})
			return err
		},
	} {
		ae := appError(t, run())
		assert.Equal(t, activities.ErrTypeGitHubNotConfigured, ae.Type(), name)
		assert.True(t, ae.NonRetryable(), name)
		assert.Contains(t, ae.Error(), "runner pools need GitHub credentials (GITHUB_TOKEN or GITHUB_APP_*)", name)
	}
}

// Persistent mode: the install step provides stand-ins for config.sh and
// svc.sh that record how they were called.
func TestRunnerRegisterPersistent(t *testing.T) {
	r := newRunnerRig(t, false, func(p *pools.Pool) {
		p.Mode = pools.ModePersistent
		p.Scope = pools.Scope{Kind: pools.ScopeOrg, Org: ghOwner}
		p.Install = &previewspec.Step{Run: `set -e
d="$HOME/actions-runner"; mkdir -p "$d"
cat > "$d/config.sh" <<'EOF'
#!/bin/sh
echo "$@" > "$HOME/config.args"
id -un > "$HOME/config.user"
echo "$ACTIONS_RUNNER_INPUT_TOKEN" > "$HOME/config.token"
touch .runner
EOF
cat > "$d/svc.sh" <<'EOF'
#!/bin/sh
echo "$@" >> "$HOME/svc.calls"
env >> "$HOME/svc.env"
[ "$1" = install ] && echo actions.runner.test.service > .service
exit 0
EOF
chmod +x "$d/config.sh" "$d/svc.sh"`}
	})
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	in := activities.RegisterInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-m1"}
	_, err = r.env.ExecuteActivity(r.a.RegisterPersistent, in)
	require.NoError(t, err)

	tokens := r.srv.RegistrationTokens()
	require.Len(t, tokens, 1)
	assert.Equal(t, 1, r.srv.Count(githubtest.RouteCreateOrgRegistrationToken))
	// The token is config.sh's environment input, not an argument; the
	// service (svc.sh and what it starts) does not get it.
	want := fmt.Sprintf("--unattended --url %s/%s --name drydock-ci-m1 --labels self-hosted,drydock --work _work --replace\n",
		strings.TrimSuffix(r.srv.URL(), "/"), ghOwner)
	assert.Equal(t, want, r.sh(t, `cat /home/runner/config.args`))
	assert.Equal(t, tokens[0]+"\n", r.sh(t, `cat /home/runner/config.token`))
	assert.NotContains(t, r.sh(t, `cat "$HOME/svc.env"`), tokens[0])
	assert.Equal(t, activities.RunnerUser+"\n", r.sh(t, `cat /home/runner/config.user`), "config.sh runs as the runner user, not root")
	assert.Equal(t, "install runner\nstart\n", r.sh(t, `cat "$HOME/svc.calls"`), "the service is the runner user's")
	assert.Equal(t, "ACTIONS_RUNNER_HOOK_JOB_COMPLETED=/etc/drydock/job-completed.sh\n", r.sh(t, `grep ^ACTIONS_RUNNER_HOOK /home/runner/actions-runner/.env`),
		"the runner cleans up after every job")
	assert.Equal(t, "root 755\nroot 755\n", r.sh(t, `stat -c '%U %a' /etc/drydock/job-completed.sh /etc/drydock/clean-between-jobs.sh`),
		"the cleanup is root's: a job cannot change it")
	assert.NotContains(t, r.logs.String(), tokens[0])
	assert.NotContains(t, r.argvs(t), tokens[0])

	// Again (a retry whose answer was lost): the service started, and the
	// runner may have run jobs since, which can change every file of its
	// directory: nothing there is run as root again.
	r.sh(t, `printf '#!/bin/sh\necho trojan >>"$HOME/svc.calls"\n' >/home/runner/actions-runner/svc.sh`)
	_, err = r.env.ExecuteActivity(r.a.RegisterPersistent, in)
	require.NoError(t, err)
	assert.Equal(t, want, r.sh(t, `cat /home/runner/config.args`))
	assert.Equal(t, "install runner\nstart\n", r.sh(t, `cat "$HOME/svc.calls"`), "the runner's svc.sh is not run again")
}

// A service whose start leaves a process running (a runner started without
// systemd) must not keep the registration lock: a retried registration
// would wait on it until it timed out (found by make chaos).
func TestRunnerRegisterPersistentRetryIsNotBlockedByTheRunningService(t *testing.T) {
	r := newRunnerRig(t, false, func(p *pools.Pool) {
		p.Mode = pools.ModePersistent
		p.Scope = pools.Scope{Kind: pools.ScopeOrg, Org: ghOwner}
		p.Install = &previewspec.Step{Run: `set -e
d="$HOME/actions-runner"; mkdir -p "$d"
printf '#!/bin/sh\ntouch .runner\n' > "$d/config.sh"
printf '#!/bin/sh\n[ "$1" = install ] && touch .service\n[ "$1" = start ] && { sleep 600 >/dev/null 2>&1 </dev/null & }\nexit 0\n' > "$d/svc.sh"
chmod +x "$d/config.sh" "$d/svc.sh"`}
	})
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	in := activities.RegisterInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-m1"}
	_, err = r.env.ExecuteActivity(r.a.RegisterPersistent, in)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := r.env.ExecuteActivity(r.a.RegisterPersistent, in)
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the retried registration waits on the lock the running service kept")
	}
}

// movingPool stands in for the RunnerPool workflow: its first run answers
// every acquire with PoolContinuingAsNew and continues as new; the next run
// leases a machine.
func movingPool(ctx workflow.Context, in runnerapi.PoolInput) error {
	moving := false
	if err := workflow.SetUpdateHandler(ctx, runnerapi.UpdateAcquire, func(ctx workflow.Context, req runnerapi.AcquireRequest) (runnerapi.Lease, error) {
		if in.Carry == nil {
			moving = true
			return runnerapi.Lease{}, temporal.NewApplicationError("pool continuing as new", runnerapi.ErrTypePoolContinuingAsNew)
		}
		return runnerapi.Lease{MachineID: "dm-fake", RunnerName: runnerapi.RunnerName(in.Pool.Name, req.JobID, req.Attempt)}, nil
	}); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return moving }); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	return workflow.NewContinueAsNewError(ctx, runnerapi.RunnerPoolName, runnerapi.PoolInput{Pool: in.Pool, Carry: &runnerapi.PoolCarry{}})
}

// AcquireRunner starts the pool with update-with-start and follows it across
// continue-as-new with the same update ID.
func TestRunnerAcquireRunnerFollowsPoolAcrossContinueAsNew(t *testing.T) {
	a, env, p := acquireRig(t, movingPool)
	in := activities.AcquireInput{Pool: p.Name, Request: runnerapi.AcquireRequest{JobID: 31, Attempt: 2}}
	for range 2 { // the second call is a retried activity: the same update, the same lease
		v, err := env.ExecuteActivity(a.AcquireRunner, in)
		require.NoError(t, err)
		var lease runnerapi.Lease
		require.NoError(t, v.Get(&lease))
		assert.Equal(t, runnerapi.Lease{MachineID: "dm-fake", RunnerName: runnerapi.RunnerName(p.Name, 31, 2)}, lease)
	}
	desc, err := devServer.Client().DescribeWorkflowExecution(context.Background(), runnerapi.PoolWorkflowID(p.Name), "")
	require.NoError(t, err)
	assert.NotEqual(t, desc.WorkflowExecutionInfo.GetFirstRunId(), desc.WorkflowExecutionInfo.GetExecution().GetRunId(), "the pool continued as new once")
}

// AcquireRunner runs end to end in the workflow tests; here, its refusals.
func TestRunnerAcquireRunnerValidatesInput(t *testing.T) {
	a := &activities.Runners{Pools: &pools.Config{Pools: []pools.Pool{testPool()}}, Temporal: devServer.Client(), TaskQueue: "drydock-test"}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)

	_, err := env.ExecuteActivity(a.AcquireRunner, activities.AcquireInput{Pool: "nope", Request: runnerapi.AcquireRequest{JobID: 1, Attempt: 1}})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeUnknownPool, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.Contains(t, ae.Error(), `unknown runner pool "nope"`)

	_, err = env.ExecuteActivity(a.AcquireRunner, activities.AcquireInput{Pool: "ci", Request: runnerapi.AcquireRequest{JobID: 1}})
	ae = appError(t, err)
	assert.Equal(t, runnerapi.ErrTypeInvalidAcquire, ae.Type())
	assert.True(t, ae.NonRetryable())

	noClient := &activities.Runners{Pools: a.Pools}
	env = s.NewTestActivityEnvironment()
	env.RegisterActivity(noClient)
	_, err = env.ExecuteActivity(noClient.AcquireRunner, activities.AcquireInput{Pool: "ci", Request: runnerapi.AcquireRequest{JobID: 1, Attempt: 1}})
	ae = appError(t, err)
	assert.Equal(t, activities.ErrTypeInvalidArgument, ae.Type())
}

func TestRunnerGitHubRunnerDirectory(t *testing.T) {
	assert.Nil(t, activities.GitHubRunnerDirectory(nil), "local mode: no directory")
	srv := githubtest.New(t)
	clients := tokenClients(t, srv)
	api, err := clients.API(0)
	require.NoError(t, err)
	_, id, err := api.GenerateJITConfig(context.Background(), runnerScope, "drydock-ci-1-1", []string{"drydock"}, 1)
	require.NoError(t, err)

	dir := activities.GitHubRunnerDirectory(clients)
	rs, err := dir.ListRunners(context.Background(), runnerScope)
	require.NoError(t, err)
	assert.Equal(t, []activities.RegisteredRunner{{ID: id, Name: "drydock-ci-1-1"}}, rs)
	require.NoError(t, dir.RemoveRunner(context.Background(), runnerScope, id))
	require.NoError(t, dir.RemoveRunner(context.Background(), runnerScope, id), "already gone")
	rs, err = dir.ListRunners(context.Background(), runnerScope)
	require.NoError(t, err)
	assert.Empty(t, rs)
}

// CheckLeaseHolders reports the holders whose RunnerJob is not running
// (closed or unknown) and the provisioning children that closed.
func TestRunnerCheckLeaseHolders(t *testing.T) {
	queue := "holders-" + t.Name()
	w := worker.New(devServer.Client(), queue, worker.Options{})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
		return workflow.Await(ctx, func() bool { return false })
	}, workflow.RegisterOptions{Name: "Waits"})
	require.NoError(t, w.Start())
	defer w.Stop()
	base := time.Now().UnixNano() % 1_000_000_000
	running, terminated, unknown := base+1, base+2, base+3
	c := devServer.Client()
	ctx := context.Background()
	for _, id := range []string{runnerapi.JobWorkflowID(running), runnerapi.JobWorkflowID(terminated), "prov-" + t.Name()} {
		_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, "Waits")
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.TerminateWorkflow(context.Background(), id, "", "test done") })
	}
	require.NoError(t, c.TerminateWorkflow(ctx, runnerapi.JobWorkflowID(terminated), "", "operator"))
	require.NoError(t, c.TerminateWorkflow(ctx, "prov-"+t.Name(), "", "operator"))

	a := &activities.Runners{Pools: &pools.Config{Pools: []pools.Pool{testPool()}}, Temporal: c, TaskQueue: queue}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	in := activities.LeaseCheckInput{Pool: "ci", Holders: []activities.LeaseHolder{
		{JobID: running, Attempt: 1, RunnerName: "drydock-ci-r"},
		{JobID: terminated, Attempt: 2, RunnerName: "drydock-ci-t"},
		{JobID: unknown, Attempt: 1},
	}, Provisions: []string{"prov-" + t.Name()}}
	v, err := env.ExecuteActivity(a.CheckLeaseHolders, in)
	require.NoError(t, err)
	var res activities.LeaseCheckResult
	require.NoError(t, v.Get(&res))
	assert.Equal(t, []activities.LeaseHolder{in.Holders[1], in.Holders[2]}, res.Gone, "local mode: no runner can be busy")
	assert.Equal(t, []string{"prov-" + t.Name()}, res.ProvisionsClosed)

	v, err = env.ExecuteActivity(a.PoolConfig, "ci")
	require.NoError(t, err)
	var cfg pools.Pool
	require.NoError(t, v.Get(&cfg))
	assert.Equal(t, testPool().Name, cfg.Name)
	_, err = env.ExecuteActivity(a.PoolConfig, "nope")
	assert.Equal(t, activities.ErrTypeUnknownPool, appError(t, err).Type())
}

// Before a JIT runner starts, what the machine's last job left is wiped:
// every process of the runner user, every file of its home but the pool's
// declared caches (which keep their entries), its files in /tmp; the
// runner's program is a fresh copy of the install, which the runner user
// cannot change. A cache reached through a symbolic link a job planted is
// not followed: the file it points to stays where it is.
func TestRunnerStartWipesWhatTheLastJobLeftButTheCaches(t *testing.T) {
	r := newRunnerRig(t, false, func(p *pools.Pool) {
		// A cache inside another, declared first: both are kept whole.
		p.Caches = []string{"~/.cache/keep/sub", "~/.cache/keep", "~/.npm", "~/.evil/cache", "~/.missing"}
	})
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	r.sh(t, `set -e
mkdir -p /home/outside/cache && echo secret >/home/outside/cache/secret
HOME=/home/runner setpriv --reuid runner --regid runner --init-groups sh -c '
set -e
mkdir -p "$HOME/actions-runner/_work/repo/repo" "$HOME/.cargo/bin" "$HOME/tmp" "$HOME/.cache/keep/sub" "$HOME/.npm"
echo x >"$HOME/actions-runner/_work/repo/repo/planted"
echo x >"$HOME/.cargo/bin/cargo"
echo x >"$HOME/tmp/planted"
echo x >"$HOME/.cache/other"
echo entry >"$HOME/.cache/keep/sub/entry"
echo outer >"$HOME/.cache/keep/outer"
echo npm >"$HOME/.npm/index"
echo x >"$HOME/planted"
echo x >/tmp/planted-`+nonce+`
echo x >/var/tmp/planted-`+nonce+`
ln -s /home/outside "$HOME/.evil"
setsid sleep 600 </dev/null >/dev/null 2>&1 &'
for i in $(seq 100); do pgrep -u runner sleep >/dev/null && break; sleep 0.1; done`)
	leftover := strings.TrimSpace(r.sh(t, `pgrep -u runner -x sleep || true`))
	require.NotEmpty(t, leftover, "the last job's background process runs")
	name := runnerapi.RunnerName("ci", 80, 1)
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 80})
	require.NoError(t, err)
	r.waitFile(t, "/home/runner/runner.pidns")
	assert.Equal(t, `.cache/keep/outer
.cache/keep/sub/entry
.npm/index
actions-runner/installed
jit
runner.nnp
runner.pid
runner.pidns
runner.user
`, r.sh(t, `cd /home/runner && find . -type f -print | sed 's|^\./||' | sort`),
		"only the runner's program and the caches are left (and what the new runner wrote)")
	assert.Equal(t, "secret\n", r.sh(t, `cat /home/outside/cache/secret`), "a cache through a planted link is not followed")
	assert.Equal(t, "gone\n", r.sh(t, `[ -e /tmp/planted-`+nonce+` ] || echo gone`), "the runner user's files in /tmp are gone")
	assert.Equal(t, "gone\n", r.sh(t, `[ -e /var/tmp/planted-`+nonce+` ] || echo gone`), "and in /var/tmp (one find sweeps them all)")
	assert.Equal(t, "gone\n", r.sh(t, `s=$(cut -d' ' -f3 /proc/`+leftover+`/stat 2>/dev/null || true); if [ -z "$s" ] || [ "$s" = Z ]; then echo gone; fi`), "the last job's background process is gone")
	assert.Equal(t, "refused\n", r.sh(t, `HOME=/home/runner setpriv --reuid runner --regid runner --init-groups sh -c 'echo trojan >>/home/runner/actions-runner/installed' 2>/dev/null || echo refused`),
		"the runner user cannot change the runner's program")
	assert.Equal(t, "ok\n", r.sh(t, `cat "$HOME/actions-runner/installed"`), "the install is intact")
	assert.Equal(t, "runner 700\n", r.sh(t, `stat -c '%U %a' /home/runner`))
}

// A per-repo pool at organization scope registers each JIT runner at its
// job's repository (in the Default group, the only one a repository has),
// so GitHub hands it no other repository's job, and removes it there; a
// shared pool registers at the organization, in its runner group.
func TestRunnerPerRepoPoolRegistersRunnersAtTheJobsRepository(t *testing.T) {
	org := pools.Scope{Kind: pools.ScopeOrg, Org: ghOwner}
	for _, c := range []struct {
		isolation string
		where     pools.Scope
		group     int64
	}{
		{pools.IsolationPerRepo, runnerScope, pools.DefaultRunnerGroupID},
		{pools.IsolationShared, org, 7},
	} {
		t.Run(c.isolation, func(t *testing.T) {
			r := newRunnerRig(t, false, func(p *pools.Pool) {
				p.Scope, p.Isolation, p.RunnerGroupID = org, c.isolation, 7
			})
			name := runnerapi.RunnerName("ci", 81, 1)
			_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{
				Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 81, Repo: ghOwner + "/" + ghRepo,
			})
			require.NoError(t, err)
			regs := r.srv.Runners(c.where)
			require.Len(t, regs, 1, "registered at %+v", c.where)
			assert.Equal(t, name, regs[0].Name)
			assert.Equal(t, c.group, regs[0].GroupID)
			other := org
			if c.where == org {
				other = runnerScope
			}
			assert.Empty(t, r.srv.Runners(other), "and nowhere else")

			if c.isolation != pools.IsolationShared {
				// Never at the organization for want of a repository.
				_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{
					Pool: "ci", MachineID: r.machine, RunnerName: runnerapi.RunnerName("ci", 82, 1), JobID: 82,
				})
				assert.Equal(t, "InvalidArgument", appError(t, err).Type(), "%v", err)
				assert.Len(t, r.srv.Runners(org), 0)
			}
			v, err := r.env.ExecuteActivity(r.a.RemoveRunner, activities.RemoveRunnerInput{Pool: "ci", RunnerName: name, Repo: ghOwner + "/" + ghRepo})
			require.NoError(t, err)
			var res activities.RemoveRunnerResult
			require.NoError(t, v.Get(&res))
			assert.True(t, res.Removed, "removed where it registered")
			assert.Empty(t, r.srv.Runners(c.where))
		})
	}
}

// The pool may start the machine's next runner as soon as GitHub reports
// the last job complete, before the last runner's wrapper has run its
// cleanup: that late cleanup must not kill the new runner (found by the
// twenty-jobs e2e test: a new runner killed, its job not picked up).
func TestRunnerLateCleanupOfTheLastRunnerLeavesTheNextAlone(t *testing.T) {
	r := newRunnerRig(t, false, func(p *pools.Pool) {
		p.RunnerCommand = []string{"sh", "-c", `[ "$DRYDOCK_JOB_ID" = 90 ] && exit 0; exec sleep 60`}
	})
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	first := runnerapi.RunnerName("ci", 90, 1)
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: first, JobID: 90})
	require.NoError(t, err)
	r.waitFile(t, "$HOME/.drydock/clean.done") // the first runner exited and its cleanup ran

	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: runnerapi.RunnerName("ci", 91, 1), JobID: 91})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.TrimSpace(r.sh(t, `pgrep -u runner -x sleep || true`)) != "" }, 10*time.Second, 50*time.Millisecond,
		"the second runner runs")
	// The first runner's cleanup, late.
	assert.Contains(t, r.sh(t, `sh "$HOME/.drydock/after-runner.sh" `+first), "no cleanup")
	assert.NotEmpty(t, strings.TrimSpace(r.sh(t, `pgrep -u runner -x sleep || true`)), "the second runner still runs")
}
