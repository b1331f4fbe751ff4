package activities_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
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

// claimRunner has the stand-in runner with config connect (at the test
// server's claim URL) and take a job: GitHub then reports it busy.
func claimRunner(t *testing.T, claimURL, config string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"jit_config": config})
	resp, err := http.Post(claimURL, "application/json", bytes.NewReader(b))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
