package emulator

import (
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

func TestExecutionEnvCwdStdin(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.running(nil).MachineID
	root := filepath.Join(e.s.DataDir(), "machines", id, "root")
	home := filepath.Join(root, "root")

	checkEnvCwdStdin(t, e, id, home)
	checkCwdMapping(t, e, id, root, home)
	last := checkExecutionFailures(t, e, id)

	// List in creation order.
	r := e.do("GET", "/v1/machines/"+id+"/executions?limit=200", nil)
	var page dedalus.Page[dedalus.Execution]
	r.json(t, &page)
	require.Len(t, page.Items, 11)
	assert.Equal(t, last.ExecutionID, page.Items[10].ExecutionID)
	assert.Equal(t, int64(11), e.stats().Executions)
}

// checkEnvCwdStdin runs one execution on machine id and checks what it
// sees (environment, working directory home, stdin) and what it reports
// (status, env keys, output). One execution.
func checkEnvCwdStdin(t *testing.T, e *env, id, home string) {
	t.Helper()
	x, out := e.run(id, map[string]any{
		"command": []string{"sh", "-c", `printf '%s|%s|%s|%s|%s|%s|%s|' "$HOME" "$USER" "$LANG" "$PORT" "$DEDALUS_MACHINE_ID" "$FOO" "$(pwd)"; cat; echo oops >&2`},
		"env":     map[string]string{"FOO": "bar", "ZED": "1", "ALPHA": "2"},
		"stdin":   "from stdin",
	})
	assert.Equal(t, dedalus.ExecSucceeded, x.Status)
	require.NotNil(t, x.ExitCode)
	assert.Equal(t, int64(0), *x.ExitCode)
	assert.Equal(t, []string{"ALPHA", "FOO", "ZED"}, x.EnvKeys)
	assert.Equal(t, "/root", x.Cwd)
	assert.False(t, x.StartedAt.IsZero())
	assert.False(t, x.CompletedAt.IsZero())
	parts := strings.Split(out.Stdout, "|")
	require.Len(t, parts, 8, out.Stdout)
	assert.Equal(t, home, parts[0])
	assert.Equal(t, "root", parts[1])
	assert.Equal(t, "C.UTF-8", parts[2])
	port, err := strconv.Atoi(parts[3])
	require.NoError(t, err)
	assert.Greater(t, port, 0)
	assert.Equal(t, id, parts[4])
	assert.Equal(t, "bar", parts[5])
	assert.Equal(t, home, parts[6])
	assert.Equal(t, "from stdin", parts[7])
	assert.Equal(t, "oops\n", out.Stderr)
	assert.Equal(t, int64(len(out.Stdout)), out.StdoutBytes)
	assert.Equal(t, int64(5), out.StderrBytes)
	assert.NotContains(t, string(e.do("GET", "/v1/machines/"+id+"/executions/"+x.ExecutionID, nil).body), "bar")
}

// checkCwdMapping checks where executions on machine id run (root: its
// root directory, home: its HOME) and that argv reaches no shell. Six
// executions.
func checkCwdMapping(t *testing.T, e *env, id, root, home string) {
	t.Helper()
	// Files persist; absolute cwd maps into the machine root, relative into HOME.
	// (argv itself is not mapped: host paths, so create the directories relative to cwd)
	x, _ := e.run(id, map[string]any{"command": []string{"mkdir", "-p", "srv/app"}, "cwd": "/"})
	require.Equal(t, dedalus.ExecSucceeded, x.Status)
	x, _ = e.run(id, map[string]any{"command": []string{"mkdir", "sub"}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status)
	assert.DirExists(t, filepath.Join(root, "srv", "app"))
	assert.DirExists(t, filepath.Join(home, "sub"))
	x, out := e.run(id, map[string]any{"command": []string{"pwd"}, "cwd": "/srv/app"})
	assert.Equal(t, filepath.Join(root, "srv", "app")+"\n", out.Stdout)
	assert.Equal(t, "/srv/app", x.Cwd)
	_, out = e.run(id, map[string]any{"command": []string{"pwd"}, "cwd": "sub"})
	assert.Equal(t, filepath.Join(home, "sub")+"\n", out.Stdout)
	_, out = e.run(id, map[string]any{"command": []string{"pwd"}, "cwd": "/../../.."})
	assert.Equal(t, root+"\n", out.Stdout, "cwd cannot escape the machine root")

	// argv is not interpreted by a shell.
	_, out = e.run(id, map[string]any{"command": []string{"echo", "$HOME", "a;b", "*"}})
	assert.Equal(t, "$HOME a;b *\n", out.Stdout)
}

// checkExecutionFailures checks how executions on machine id fail; it
// returns the last of its four executions.
func checkExecutionFailures(t *testing.T, e *env, id string) dedalus.Execution {
	t.Helper()
	// A missing cwd or command fails the execution, not the request.
	x, _ := e.run(id, map[string]any{"command": []string{"pwd"}, "cwd": "/nope"})
	assert.Equal(t, dedalus.ExecFailed, x.Status)
	assert.Equal(t, ExecErrCwdNotFound, x.ErrorCode)
	assert.Contains(t, x.ErrorMessage, "/nope")
	x, _ = e.run(id, map[string]any{"command": []string{"no-such-binary-xyz"}})
	assert.Equal(t, dedalus.ExecFailed, x.Status)
	assert.Equal(t, ExecErrCommandNotFound, x.ErrorCode)

	// Non-zero exit.
	x, _ = e.run(id, map[string]any{"command": []string{"sh", "-c", "exit 7"}})
	assert.Equal(t, dedalus.ExecFailed, x.Status)
	require.NotNil(t, x.ExitCode)
	assert.Equal(t, int64(7), *x.ExitCode)
	assert.Nil(t, x.Signal)

	// Killed by a signal.
	x, _ = e.run(id, map[string]any{"command": []string{"sh", "-c", "kill -TERM $$"}})
	assert.Equal(t, dedalus.ExecFailed, x.Status)
	require.NotNil(t, x.Signal)
	assert.Equal(t, int64(syscall.SIGTERM), *x.Signal)
	return x
}

func TestExecutionTimeoutAndTruncation(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.OutputCap = 1000 })
	id := e.running(nil).MachineID

	start := time.Now()
	x, out := e.run(id, map[string]any{"command": []string{"sh", "-c", "echo before; sleep 30; echo after"}, "timeout_ms": 200})
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, dedalus.ExecFailed, x.Status)
	assert.Equal(t, ExecErrTimeout, x.ErrorCode)
	require.NotNil(t, x.Signal)
	assert.Equal(t, int64(9), *x.Signal)
	assert.Equal(t, "before\n", out.Stdout)
	assert.Empty(t, procsOf(id), "the timed-out process group is gone")

	x, out = e.run(id, map[string]any{"command": []string{"sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a; head -c 10 /dev/zero | tr '\\0' b >&2"}})
	assert.Equal(t, dedalus.ExecSucceeded, x.Status)
	assert.Equal(t, strings.Repeat("a", 1000), out.Stdout)
	assert.Equal(t, int64(5000), out.StdoutBytes)
	assert.True(t, out.StdoutTruncated)
	assert.Equal(t, "bbbbbbbbbb", out.Stderr)
	assert.False(t, out.StderrTruncated)
	assert.Equal(t, int64(5000), x.StdoutBytes)
	assert.True(t, x.StdoutTruncated)

	// Events: lifecycle queued, running, chunks, final; paged by cursor.
	all, _ := pageAll[dedalus.ExecutionEvent](t, e, "/v1/machines/"+id+"/executions/"+x.ExecutionID+"/events?limit=1", 100)
	require.GreaterOrEqual(t, len(all), 5)
	var stdout strings.Builder
	for i, ev := range all {
		assert.Equal(t, int64(i+1), ev.Sequence)
		if ev.Type == dedalus.EventStdout {
			stdout.WriteString(ev.Chunk)
		}
	}
	assert.Equal(t, strings.Repeat("a", 1000), stdout.String())
	assert.Equal(t, dedalus.ExecQueued, all[0].Status)
	assert.Equal(t, dedalus.ExecRunning, all[1].Status)
	last := all[len(all)-1]
	assert.Equal(t, dedalus.EventLifecycle, last.Type)
	assert.Equal(t, dedalus.ExecSucceeded, last.Status)
	require.NotNil(t, last.ExitCode)
}

func TestExecutionCancel(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.running(nil).MachineID
	x := e.exec(id, map[string]any{"command": []string{"sleep", "30"}})
	assert.Equal(t, dedalus.ExecRunning, x.Status)
	path := "/v1/machines/" + id + "/executions/" + x.ExecutionID
	r, err := e.raw("DELETE", path, nil, h{"Authorization", "Bearer " + testKey})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &x)
	assert.Equal(t, dedalus.ExecCancelled, x.Status)
	assert.False(t, x.CompletedAt.IsZero())
	assert.Equal(t, http.StatusNotFound, e.do("GET", path, nil).status)
	assert.Equal(t, http.StatusNotFound, e.do("DELETE", path, nil).status)
	assert.Empty(t, procsOf(id))
}

func TestExecutionWakesSleepingMachine(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.WakeDelay = 100 * time.Millisecond })
	id := e.running(nil).MachineID
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+id+"/sleep", nil).status)
	e.waitPhase(id, dedalus.PhaseSleeping)
	x := e.exec(id, map[string]any{"command": []string{"echo", "hi"}})
	assert.Equal(t, dedalus.ExecWakeInProgress, x.Status)
	m, _ := e.get(id)
	assert.Equal(t, dedalus.PhaseStarting, m.Status.Phase)
	x = e.waitExec(id, x.ExecutionID)
	assert.Equal(t, dedalus.ExecSucceeded, x.Status)
	st := e.stats()
	assert.Equal(t, int64(1), st.Wakes)
	assert.Equal(t, int64(0), st.WakeRequests)
}

func TestExecutionQueuedWhileBooting(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.BootDelay = 200 * time.Millisecond })
	id := e.create(nil).MachineID
	x := e.exec(id, map[string]any{"command": []string{"echo", "hi"}})
	assert.Equal(t, dedalus.ExecQueued, x.Status)
	x = e.waitExec(id, x.ExecutionID)
	assert.Equal(t, dedalus.ExecSucceeded, x.Status)
	m, _ := e.get(id)
	assert.Equal(t, dedalus.PhaseRunning, m.Status.Phase)
	assert.False(t, x.StartedAt.Before(m.Status.LastTransitionAt))
}
