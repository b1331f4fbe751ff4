package emulator

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

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

	pid := appPID(t, id, p.URL)
	for i := 1; i <= 3; i++ {
		code, body, _ := getText(t, p.URL+"/")
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, strconv.Itoa(i), body)
	}
	checkSSEThrough(t, p.URL)
	checkUpgradeThrough(t, p.URL)
	checkSleepFreezesApp(t, e, id, p, pid)

	// Wake resumes it with its memory intact.
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+id+"/wake", nil).status)
	e.waitPhase(id, dedalus.PhaseRunning)
	st, _ := readStat(pid)
	assert.False(t, stopped(st.state))
	code, body, _ := getText(t, p.URL+"/")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "4", body)

	checkPreviewListAndDelete(t, e, id, p)
}

// appPID waits for the test app of machine id to answer through the
// preview at url and returns its process ID, one of the machine's.
func appPID(t *testing.T, id, url string) int {
	t.Helper()
	var body string
	eventually(t, 5*time.Second, "the app to answer through the preview", func() bool {
		c := &http.Client{Timeout: time.Second}
		res, err := c.Get(url + "/pid")
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
	return pid
}

// checkSSEThrough checks that the test app's server-sent events stream
// through the preview at url.
func checkSSEThrough(t *testing.T, url string) {
	t.Helper()
	code, body, hdr := getText(t, url+"/sse")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "text/event-stream", hdr.Get("Content-Type"))
	assert.Equal(t, "data: 1\n\ndata: 2\n\ndata: 3\n\n", body)
}

// checkUpgradeThrough checks that WebSocket-style upgrades pass through
// the preview at url: the test app's echo protocol answers.
func checkUpgradeThrough(t *testing.T, url string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
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
}

// checkSleepFreezesApp sleeps machine id and checks that its app (process
// pid) is frozen and that the preview p answers 503 meanwhile.
func checkSleepFreezesApp(t *testing.T, e *env, id string, p dedalus.Preview, pid int) {
	t.Helper()
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+id+"/sleep", nil).status)
	e.waitPhase(id, dedalus.PhaseSleeping)
	st, ok := readStat(pid)
	require.True(t, ok)
	assert.True(t, stopped(st.state), "app state %c", st.state)
	code, body, hdr := getText(t, p.URL+"/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "1", hdr.Get("Retry-After"))
	assert.Contains(t, body, "not running")
	r := e.do("GET", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil)
	var gp dedalus.Preview
	r.json(t, &gp)
	assert.Equal(t, dedalus.PreviewWakeInProgress, gp.Status)
}

// checkPreviewListAndDelete lists machine id's previews (p alone) and
// deletes p: closed, gone from the API, its listener shut.
func checkPreviewListAndDelete(t *testing.T, e *env, id string, p dedalus.Preview) {
	t.Helper()
	r := e.do("GET", "/v1/machines/"+id+"/previews", nil)
	var page dedalus.Page[dedalus.Preview]
	r.json(t, &page)
	require.Len(t, page.Items, 1)
	r, err := e.raw("DELETE", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil, h{"Authorization", "Bearer " + testKey})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	var gp dedalus.Preview
	r.json(t, &gp)
	assert.Equal(t, dedalus.PreviewClosed, gp.Status)
	assert.Equal(t, http.StatusNotFound, e.do("GET", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil).status)
	_, err = (&http.Client{Timeout: time.Second}).Get(p.URL + "/")
	assert.Error(t, err, "the preview listener is closed")
	assert.Equal(t, 0, e.stats().PreviewsLive)
}

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
