package dedalus_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

// startApp starts examples/previewapp in the background on the machine and
// opens a preview to it.
func (e *env) startApp(t *testing.T, m *dedalus.Machine) *dedalus.Preview {
	t.Helper()
	ctx := ctxT(t)
	res, err := e.c.RunCommand(ctx, m.MachineID, dedalus.CreateExecutionRequest{
		Command: []string{"sh", "-c", `nohup python3 "$APP" >app.log 2>&1 &`},
		Env:     map[string]string{"APP": previewApp, "DRYDOCK_SHA": "abc123"},
	}, "start-app-"+m.MachineID)
	require.NoError(t, err)
	require.NoError(t, res.Err())
	p, err := e.c.CreatePreview(ctx, m.MachineID, dedalus.CreatePreviewRequest{Port: 3000}, "preview-"+m.MachineID)
	require.NoError(t, err)
	require.NotEmpty(t, p.URL)
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 10*time.Second, 50*time.Millisecond, "the app answers through the preview")
	return p
}

type countResp struct {
	Count int `json:"count"`
	PID   int `json:"pid"`
}

func getCount(t *testing.T, url string) (int, countResp) {
	t.Helper()
	resp, err := http.Get(url + "/count")
	require.NoError(t, err)
	defer resp.Body.Close()
	var c countResp
	if resp.StatusCode == 200 {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&c))
	}
	return resp.StatusCode, c
}

func TestSleepWakeKeepsAppStateAndPreviews(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	m := e.running(t, "app", small)
	p := e.startApp(t, m)

	got, err := e.c.GetPreview(ctx, m.MachineID, p.PreviewID)
	require.NoError(t, err)
	assert.Equal(t, dedalus.PreviewReady, got.Status)
	list, err := e.c.ListPreviews(ctx, m.MachineID, dedalus.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1)

	_, c1 := getCount(t, p.URL)
	_, c2 := getCount(t, p.URL)
	assert.Equal(t, c1.Count+1, c2.Count)

	_, err = e.c.SleepAndWait(ctx, m.MachineID, "app-sleep")
	require.NoError(t, err)
	status, _ := getCount(t, p.URL)
	assert.Equal(t, http.StatusServiceUnavailable, status, "a sleeping machine's preview answers 503")

	_, err = e.c.WakeAndWait(ctx, m.MachineID, "app-wake")
	require.NoError(t, err)
	status, c3 := getCount(t, p.URL)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, c2.Count+1, c3.Count, "in-memory state survived sleep and wake")
	assert.Equal(t, c1.PID, c3.PID, "same process")

	closed, err := e.c.DeletePreview(ctx, m.MachineID, p.PreviewID, "")
	require.NoError(t, err)
	assert.Equal(t, dedalus.PreviewClosed, closed.Status)
	_, err = e.c.GetPreview(ctx, m.MachineID, p.PreviewID)
	assert.True(t, dedalus.IsNotFound(err))
	assert.Equal(t, 0, e.emu.Stats().PreviewsLive)
}

func TestAutosleepFires(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	m := e.running(t, "auto", dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 5, Autosleep: "1s"})
	assert.EqualValues(t, 1, m.AutosleepSeconds)
	start := time.Now()
	slept, err := e.c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseSleeping)
	if err != nil {
		// The machine converges to sleeping on its own; WaitForPhase sees it.
		t.Fatal(err)
	}
	assert.Equal(t, dedalus.DesiredSleeping, slept.DesiredState)
	assert.GreaterOrEqual(t, time.Since(start), 700*time.Millisecond)
	assert.EqualValues(t, 1, e.emu.Stats().Autosleeps)
}

func machineProcesses(t *testing.T, machineID string) []int {
	t.Helper()
	var pids []int
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, ent := range ents {
		var pid int
		if _, err := fmt.Sscan(ent.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if kv == "DEDALUS_MACHINE_ID="+machineID {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func TestDeleteLeavesNoProcessOrFile(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	m := e.running(t, "del", small)
	res, err := e.c.RunCommand(ctx, m.MachineID, dedalus.CreateExecutionRequest{
		Command: []string{"sh", "-c", "echo data > keep.txt; nohup sleep 300 >/dev/null 2>&1 & setsid sleep 300 >/dev/null 2>&1 &"},
	}, "bg")
	require.NoError(t, err)
	require.NoError(t, res.Err())
	require.Eventually(t, func() bool { return len(machineProcesses(t, m.MachineID)) >= 2 }, 5*time.Second, 20*time.Millisecond)
	pids := machineProcesses(t, m.MachineID)

	// Sleep freezes them (state T), wake resumes them.
	_, err = e.c.SleepAndWait(ctx, m.MachineID, "del-sleep")
	require.NoError(t, err)
	for _, pid := range pids {
		assert.Equal(t, "T", procState(pid), "pid %d stopped while asleep", pid)
	}
	_, err = e.c.WakeAndWait(ctx, m.MachineID, "del-wake")
	require.NoError(t, err)
	for _, pid := range pids {
		assert.NotEqual(t, "T", procState(pid), "pid %d resumed", pid)
	}

	_, err = e.c.DeleteMachine(ctx, m.MachineID, dedalus.Mutation{IdempotencyKey: "del-delete"})
	require.NoError(t, err)
	_, err = e.c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseDestroyed)
	require.NoError(t, err)
	assert.Empty(t, machineProcesses(t, m.MachineID), "no process of the machine is left")
	for _, pid := range pids {
		// Dead: gone, or a zombie waiting for init (its adoptive parent) to reap it.
		gone := syscall.Kill(pid, 0) == syscall.ESRCH || procState(pid) == "Z"
		assert.True(t, gone, "pid %d was killed", pid)
	}
	assert.NoDirExists(t, filepath.Join(e.emu.DataDir(), "machines", m.MachineID))
}

func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}
