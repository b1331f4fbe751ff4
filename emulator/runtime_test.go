package emulator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
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
	m := e.running(nil)
	id := m.MachineID
	root := filepath.Join(e.s.DataDir(), "machines", id, "root")

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
	home := filepath.Join(root, "root")
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

	// Files persist; absolute cwd maps into the machine root, relative into HOME.
	// (argv itself is not mapped: host paths, so create the directories relative to cwd)
	x, _ = e.run(id, map[string]any{"command": []string{"mkdir", "-p", "srv/app"}, "cwd": "/"})
	require.Equal(t, dedalus.ExecSucceeded, x.Status)
	x, _ = e.run(id, map[string]any{"command": []string{"mkdir", "sub"}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status)
	assert.DirExists(t, filepath.Join(root, "srv", "app"))
	assert.DirExists(t, filepath.Join(home, "sub"))
	x, out = e.run(id, map[string]any{"command": []string{"pwd"}, "cwd": "/srv/app"})
	assert.Equal(t, filepath.Join(root, "srv", "app")+"\n", out.Stdout)
	assert.Equal(t, "/srv/app", x.Cwd)
	_, out = e.run(id, map[string]any{"command": []string{"pwd"}, "cwd": "sub"})
	assert.Equal(t, filepath.Join(home, "sub")+"\n", out.Stdout)
	_, out = e.run(id, map[string]any{"command": []string{"pwd"}, "cwd": "/../../.."})
	assert.Equal(t, root+"\n", out.Stdout, "cwd cannot escape the machine root")

	// argv is not interpreted by a shell.
	_, out = e.run(id, map[string]any{"command": []string{"echo", "$HOME", "a;b", "*"}})
	assert.Equal(t, "$HOME a;b *\n", out.Stdout)

	// A missing cwd or command fails the execution, not the request.
	x, _ = e.run(id, map[string]any{"command": []string{"pwd"}, "cwd": "/nope"})
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

	// List in creation order.
	r := e.do("GET", "/v1/machines/"+id+"/executions?limit=200", nil)
	var page dedalus.Page[dedalus.Execution]
	r.json(t, &page)
	require.Len(t, page.Items, 11)
	assert.Equal(t, x.ExecutionID, page.Items[10].ExecutionID)
	assert.Equal(t, int64(11), e.stats().Executions)
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
	var all []dedalus.ExecutionEvent
	cursor := ""
	for range 100 {
		path := "/v1/machines/" + id + "/executions/" + x.ExecutionID + "/events?limit=1"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := e.do("GET", path, nil)
		require.Equal(t, http.StatusOK, r.status)
		var p dedalus.Page[dedalus.ExecutionEvent]
		r.json(t, &p)
		all = append(all, p.Items...)
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
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

// startApp starts the test app in the background on the machine and waits for it.
func startApp(t *testing.T, e *env, id string) {
	t.Helper()
	x, out := e.run(id, map[string]any{
		"command": []string{"sh", "-c", `nohup "$APP" >app.log 2>&1 & echo started`},
		"env":     map[string]string{"APP": appBin},
	})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, "%+v %+v", x, out)
	require.Equal(t, "started\n", out.Stdout)
}

func previewOf(t *testing.T, e *env, id string) dedalus.Preview {
	t.Helper()
	r := e.do("POST", "/v1/machines/"+id+"/previews", map[string]any{"port": 3000})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var p dedalus.Preview
	r.json(t, &p)
	return p
}

func getText(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b), res.Header
}

func TestSleepWakeKeepsAppState(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.running(map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 1, "autosleep": "never"}).MachineID
	startApp(t, e, id)
	p := previewOf(t, e, id)
	assert.Equal(t, dedalus.PreviewReady, p.Status)
	assert.Equal(t, "http", p.Protocol)
	assert.Equal(t, "public", p.Visibility)
	assert.Equal(t, int64(3000), p.Port)
	assert.True(t, strings.HasPrefix(p.URL, "http://127.0.0.1:"))
	assert.Equal(t, 1, e.stats().PreviewsLive)

	var body string
	eventually(t, 5*time.Second, "the app to answer through the preview", func() bool {
		c := &http.Client{Timeout: time.Second}
		res, err := c.Get(p.URL + "/pid")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		body = string(b)
		return res.StatusCode == http.StatusOK
	})
	pid, err := strconv.Atoi(body)
	require.NoError(t, err)
	assert.Contains(t, procsOf(id), pid)

	for i := 1; i <= 3; i++ {
		code, body, _ := getText(t, p.URL+"/")
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, strconv.Itoa(i), body)
	}

	// SSE streams through the preview.
	code, body, hdr := getText(t, p.URL+"/sse")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "text/event-stream", hdr.Get("Content-Type"))
	assert.Equal(t, "data: 1\n\ndata: 2\n\ndata: 3\n\n", body)

	// WebSocket-style upgrades pass through.
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "http://"))
	require.NoError(t, err)
	_, err = fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, res.StatusCode)
	_, err = conn.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(br, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
	conn.Close()

	// Sleep freezes the app; the preview answers 503 meanwhile.
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+id+"/sleep", nil).status)
	e.waitPhase(id, dedalus.PhaseSleeping)
	st, ok := readStat(pid)
	require.True(t, ok)
	assert.True(t, stopped(st.state), "app state %c", st.state)
	code, body, hdr = getText(t, p.URL+"/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "1", hdr.Get("Retry-After"))
	assert.Contains(t, body, "not running")
	r := e.do("GET", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil)
	var gp dedalus.Preview
	r.json(t, &gp)
	assert.Equal(t, dedalus.PreviewWakeInProgress, gp.Status)

	// Wake resumes it with its memory intact.
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+id+"/wake", nil).status)
	e.waitPhase(id, dedalus.PhaseRunning)
	st, _ = readStat(pid)
	assert.False(t, stopped(st.state))
	code, body, _ = getText(t, p.URL+"/")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "4", body)

	// List and delete the preview.
	r = e.do("GET", "/v1/machines/"+id+"/previews", nil)
	var page dedalus.Page[dedalus.Preview]
	r.json(t, &page)
	require.Len(t, page.Items, 1)
	r, err = e.raw("DELETE", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil, h{"Authorization", "Bearer " + testKey})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	r.json(t, &gp)
	assert.Equal(t, dedalus.PreviewClosed, gp.Status)
	assert.Equal(t, http.StatusNotFound, e.do("GET", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil).status)
	_, err = (&http.Client{Timeout: time.Second}).Get(p.URL + "/")
	assert.Error(t, err, "the preview listener is closed")
	assert.Equal(t, 0, e.stats().PreviewsLive)
}

func TestAutosleep(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.running(map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 1, "autosleep": "1s"}).MachineID
	t0 := time.Now()
	m, _ := e.get(id)
	assert.Equal(t, int64(1), m.AutosleepSeconds)
	m = e.waitPhase(id, dedalus.PhaseSleeping)
	assert.GreaterOrEqual(t, time.Since(t0), 900*time.Millisecond)
	assert.Less(t, time.Since(t0), 3*time.Second)
	assert.Contains(t, m.Status.Reason, "autosleep")
	assert.Equal(t, dedalus.DesiredSleeping, m.DesiredState)
	st := e.stats()
	assert.Equal(t, int64(1), st.Autosleeps)
	assert.Equal(t, int64(1), st.Sleeps)

	// "never" disables it.
	id = e.running(map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 1, "autosleep": "never"}).MachineID
	m, _ = e.get(id)
	assert.Equal(t, int64(0), m.AutosleepSeconds)
}

// Sub-second windows through Config.DefaultAutosleep keep these tests short.
func TestAutosleepExecutionIsActivity(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.DefaultAutosleep = 300 * time.Millisecond })
	id := e.running(nil).MachineID
	x := e.exec(id, map[string]any{"command": []string{"sleep", "0.6"}})
	time.Sleep(450 * time.Millisecond)
	m, _ := e.get(id)
	assert.Equal(t, dedalus.PhaseRunning, m.Status.Phase, "a running execution keeps the machine awake")
	x = e.waitExec(id, x.ExecutionID)
	finished := time.Now()
	e.waitPhase(id, dedalus.PhaseSleeping)
	assert.GreaterOrEqual(t, time.Since(finished), 200*time.Millisecond)
	assert.Equal(t, int64(1), e.stats().Autosleeps)
}

func TestAutosleepPreviewTrafficIsActivity(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.DefaultAutosleep = 300 * time.Millisecond })
	id := e.running(nil).MachineID
	startApp(t, e, id)
	p := previewOf(t, e, id)
	deadline := time.Now().Add(700 * time.Millisecond)
	for time.Now().Before(deadline) {
		res, err := http.Get(p.URL + "/")
		if err == nil {
			res.Body.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	m, _ := e.get(id)
	assert.Equal(t, dedalus.PhaseRunning, m.Status.Phase, "preview traffic keeps the machine awake")
	e.waitPhase(id, dedalus.PhaseSleeping)
	assert.Equal(t, int64(1), e.stats().Autosleeps)
	code, _, hdr := getText(t, p.URL+"/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "1", hdr.Get("Retry-After"))
}

func TestDeleteLeavesNothing(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.running(nil).MachineID
	startApp(t, e, id)
	x, _ := e.run(id, map[string]any{"command": []string{"sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & (sleep 301 &) ; echo ok > file"}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status)
	running := e.exec(id, map[string]any{"command": []string{"sleep", "300"}})
	p := previewOf(t, e, id)
	dir := filepath.Join(e.s.DataDir(), "machines", id)
	assert.FileExists(t, filepath.Join(dir, "root", "root", "file"))
	eventually(t, 5*time.Second, "4 processes", func() bool { return len(procsOf(id)) >= 4 })

	// Sleep first: frozen processes must die too.
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+id+"/sleep", nil).status)
	e.waitPhase(id, dedalus.PhaseSleeping)
	r := e.do("DELETE", "/v1/machines/"+id, nil)
	require.Equal(t, http.StatusAccepted, r.status)
	m := e.waitPhase(id, dedalus.PhaseDestroyed)
	assert.Equal(t, dedalus.DesiredDestroyed, m.DesiredState)
	assert.Empty(t, procsOf(id))
	assert.NoDirExists(t, dir)
	_, err := (&http.Client{Timeout: time.Second}).Get(p.URL + "/")
	assert.Error(t, err)
	r = e.do("GET", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil)
	var gp dedalus.Preview
	r.json(t, &gp)
	assert.Equal(t, dedalus.PreviewClosed, gp.Status)
	xr := e.waitExec(id, running.ExecutionID)
	assert.Equal(t, dedalus.ExecFailed, xr.Status)
	assert.Equal(t, ExecErrMachineDestroyed, xr.ErrorCode)
	st := e.stats()
	assert.Equal(t, 0, st.LiveMachines)
	assert.Equal(t, 0, st.PreviewsLive)
}

func TestCloseKillsEverything(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	s, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	e := &env{t: t, s: s, url: s.URL(), http: &http.Client{Timeout: 10 * time.Second}}
	id := e.running(nil).MachineID
	startApp(t, e, id)
	e.exec(id, map[string]any{"command": []string{"sleep", "300"}})
	p := previewOf(t, e, id)
	eventually(t, 5*time.Second, "processes", func() bool { return len(procsOf(id)) >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Close(ctx))
	assert.Empty(t, procsOf(id))
	assert.NoDirExists(t, s.DataDir())
	_, err = (&http.Client{Timeout: time.Second}).Get(p.URL)
	assert.Error(t, err)
	_, err = (&http.Client{Timeout: time.Second}).Get(s.URL() + "/_local/stats")
	assert.Error(t, err)
	require.NoError(t, s.Close(ctx), "Close is idempotent")
}

func TestOwnDataDirKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A machine left by a previous run is reaped at start.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "machines", "dm-stale", "root"), 0o755))
	e := start(t, func(c *Config) { c.DataDir = dir })
	assert.NoDirExists(t, filepath.Join(dir, "machines", "dm-stale"))
	id := e.running(nil).MachineID
	assert.DirExists(t, filepath.Join(dir, "machines", id, "root", "root"))
}

func TestFaultInjection(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.create(nil).MachineID

	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"getMachine": {Error503: 0.5}}}))
	n503 := 0
	const n = 200
	for range n {
		r := e.do("GET", "/v1/machines/"+id, nil)
		switch r.status {
		case http.StatusServiceUnavailable:
			n503++
			eb := r.errBody(t)
			require.Equal(t, dedalus.ErrorBody{ErrorCode: dedalus.CodeDependencyUnavailable, Message: "runtime unavailable", Retryable: true}, eb)
		case http.StatusOK:
		default:
			t.Fatalf("status %d", r.status)
		}
	}
	assert.InDelta(t, n/2, n503, n*0.15, "503 rate")
	assert.EqualValues(t, n503, e.stats().FaultsInjected, "every injected fault is counted")
	// Other routes are unaffected.
	assert.Equal(t, http.StatusOK, e.do("GET", "/v1/machines", nil).status)

	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"*": {Error429: 1, RetryAfterMS: 33}}}))
	r := e.do("GET", "/v1/machines", nil)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	assert.Equal(t, dedalus.ErrorBody{ErrorCode: dedalus.CodeRateLimited, Message: "mutation rate limit exceeded", Retryable: true, RetryAfterMS: 33}, r.errBody(t))
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"*": {Error429: 1}}}))
	r = e.do("GET", "/v1/machines", nil)
	assert.Equal(t, int64(100), r.errBody(t).RetryAfterMS)

	// Fresh connections: Go's transport transparently retries requests that
	// carry an Idempotency-Key when a reused connection fails.
	e.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	// reset: the connection dies before anything happens.
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"createMachine": {Reset: 1}}}))
	before := e.stats().Creates
	body := map[string]any{"vcpu": 1, "memory_mib": 256, "storage_gib": 1}
	key := e.newKey()
	_, err := e.raw("POST", "/v1/machines", body, h{"Authorization", "Bearer " + testKey, "Idempotency-Key", key})
	require.Error(t, err)
	assert.Equal(t, before, e.stats().Creates)

	// reset_after: the machine is created, the answer is lost; a retry with
	// the same key replays it.
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"createMachine": {ResetAfter: 1}}}))
	_, err = e.raw("POST", "/v1/machines", body, h{"Authorization", "Bearer " + testKey, "Idempotency-Key", key})
	require.Error(t, err)
	assert.True(t, isReset(err), "want a connection reset, got %v", err)
	assert.Equal(t, before+1, e.stats().Creates)
	require.NoError(t, e.s.SetFaults(Faults{}))
	r = e.do("POST", "/v1/machines", body, "Idempotency-Key", key)
	require.Equal(t, http.StatusAccepted, r.status)
	st := e.stats()
	assert.Equal(t, before+1, st.Creates)
	assert.Equal(t, int64(1), st.IdempotentReplays)
	assert.Equal(t, 2, st.LiveMachines)

	// Latency delays the answer.
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"listMachines": {LatencyMS: 150}}}))
	t0 := time.Now()
	require.Equal(t, http.StatusOK, e.do("GET", "/v1/machines", nil).status)
	assert.GreaterOrEqual(t, time.Since(t0), 150*time.Millisecond)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "EOF")
}

func TestStatsAwakeTime(t *testing.T) {
	t.Parallel()
	e := start(t)
	m := e.running(map[string]any{"vcpu": 4, "memory_mib": 512, "storage_gib": 1})
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+m.MachineID+"/sleep", nil).status)
	e.waitPhase(m.MachineID, dedalus.PhaseSleeping)
	st1 := e.stats()
	require.Len(t, st1.Machines, 1)
	ms := st1.Machines[0]
	assert.Equal(t, m.MachineID, ms.MachineID)
	assert.Equal(t, dedalus.PhaseSleeping, ms.Phase)
	assert.Equal(t, float64(4), ms.VCPU)
	assert.Greater(t, ms.AwakeSeconds, 0.1)
	assert.Less(t, ms.AwakeSeconds, 2.0)
	assert.InDelta(t, 4*st1.AwakeSeconds, st1.AwakeVCPUSeconds, 1e-9)
	time.Sleep(100 * time.Millisecond)
	st2 := e.stats()
	assert.Equal(t, st1.AwakeSeconds, st2.AwakeSeconds, "no awake time accrues while asleep")

	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+m.MachineID+"/wake", nil).status)
	e.waitPhase(m.MachineID, dedalus.PhaseRunning)
	time.Sleep(50 * time.Millisecond)
	st3 := e.stats()
	assert.Greater(t, st3.AwakeSeconds, st2.AwakeSeconds+0.04, "the running interval so far counts")
	assert.Equal(t, int64(1), st3.Wakes)
	assert.Equal(t, int64(1), st3.WakeRequests)
	assert.Equal(t, int64(1), st3.Sleeps)

	e.s.ResetStats()
	st4 := e.Stats()
	assert.Equal(t, int64(0), st4.Wakes)
	assert.Less(t, st4.AwakeSeconds, 0.05)
	assert.Equal(t, 1, st4.LiveMachines)
}

// Stats is the Go accessor, for symmetry with the HTTP endpoint.
func (e *env) Stats() Stats { return e.s.Stats() }

// A preview created on a sleeping machine reports wake_in_progress, so the
// emulator must start that wake (as creating an execution does), and the
// preview's ready_at is when the machine became ready, not when the
// preview was first read.
func TestPreviewOnSleepingMachineStartsTheWake(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.WakeDelay = 150 * time.Millisecond })
	id := e.running(map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 1, "autosleep": "never"}).MachineID
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+id+"/sleep", nil).status)
	e.waitPhase(id, dedalus.PhaseSleeping)
	wakesBefore := e.stats().Wakes

	p := previewOf(t, e, id)
	assert.Equal(t, dedalus.PreviewWakeInProgress, p.Status)
	assert.True(t, p.ReadyAt.IsZero(), "not ready yet")
	m := e.waitPhase(id, dedalus.PhaseRunning)
	assert.Equal(t, dedalus.DesiredRunning, m.DesiredState)
	assert.Equal(t, wakesBefore+1, e.stats().Wakes, "exactly one wake, started by the preview")

	time.Sleep(300 * time.Millisecond) // read well after the machine became ready
	var got dedalus.Preview
	e.do("GET", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil).json(t, &got)
	assert.Equal(t, dedalus.PreviewReady, got.Status)
	assert.WithinDuration(t, m.Status.LastTransitionAt, got.ReadyAt, 20*time.Millisecond,
		"ready_at is when the machine became running (%s), not when the preview was read", m.Status.LastTransitionAt)
}

func TestPreviewOnRunningMachineIsReadyAtCreation(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.running(map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 1, "autosleep": "never"}).MachineID
	p := previewOf(t, e, id)
	assert.Equal(t, dedalus.PreviewReady, p.Status)
	assert.Equal(t, p.CreatedAt, p.ReadyAt, "ready the moment it is created")
	time.Sleep(100 * time.Millisecond)
	var got dedalus.Preview
	e.do("GET", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil).json(t, &got)
	assert.Equal(t, p.ReadyAt, got.ReadyAt, "ready_at does not move when read")
}
