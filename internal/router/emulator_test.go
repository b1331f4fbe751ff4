package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/workflows"
)

// machineWaker wakes one emulator machine directly, standing in for the
// workflow's wake handler.
type machineWaker struct {
	c         *dedalus.Client
	machineID string
	url       string
	wakes     atomic.Int32
}

func (w *machineWaker) Wake(ctx context.Context, _ string) (workflows.WakeResult, error) {
	n := w.wakes.Add(1)
	if _, err := w.c.WakeAndWait(ctx, w.machineID, fmt.Sprintf("router-test-wake-%d", n)); err != nil {
		return workflows.WakeResult{}, err
	}
	return workflows.WakeResult{URL: w.url, MachineID: w.machineID}, nil
}

func (w *machineWaker) Touch(context.Context, string) error { return nil }

func (w *machineWaker) Visibility(context.Context, string) (string, error) {
	return workflows.VisibilityPublic, nil
}

// The router in front of a real (emulated) Dedalus preview: the preview
// answers 503 while its machine sleeps, and the router wakes it. The demo
// app's in-memory counter shows the process survived.
func TestRouterWithEmulatedPreview(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, m, pv := emulatedPreview(ctx, t)

	waker := &machineWaker{c: c, machineID: m.MachineID, url: pv.URL}
	rt, srv := newRouter(t, waker, func(o *Options) { o.AwakeTTL = time.Hour })
	advance := fakeClock(rt)
	host := "pr-1.preview.localhost"
	count := func() int {
		resp, body := get(t, srv, host, "/count")
		require.Equal(t, 200, resp.StatusCode, body)
		var v struct{ Count int }
		require.NoError(t, json.Unmarshal([]byte(body), &v), body)
		return v.Count
	}
	require.Eventually(t, func() bool {
		resp, _ := get(t, srv, host, "/healthz")
		return resp.StatusCode == 200
	}, 20*time.Second, 50*time.Millisecond, "the app to start")
	assert.Equal(t, 1, count())
	assert.Equal(t, 2, count())

	// The machine sleeps behind the router's back (autosleep); its cached
	// upstream now answers 503. A GET wakes it and is retried.
	_, err := c.SleepAndWait(ctx, m.MachineID, "router-test-sleep-1")
	require.NoError(t, err)
	advance(time.Minute)
	wakes := waker.wakes.Load()
	assert.Equal(t, 3, count(), "same process: memory survived the sleep")
	assert.Equal(t, wakes+1, waker.wakes.Load())

	// A POST is not retried: it gets the preview's 503, and the wake the
	// router starts lets the client's retry through to the app.
	_, err = c.SleepAndWait(ctx, m.MachineID, "router-test-sleep-2")
	require.NoError(t, err)
	advance(time.Minute)
	resp, body := do(t, "POST", srv.URL+"/count", host, strings.NewReader("x"), nil)
	assert.Equal(t, 503, resp.StatusCode, body)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	require.Eventually(t, func() bool {
		resp, _ := do(t, "POST", srv.URL+"/count", host, strings.NewReader("x"), nil)
		return resp.StatusCode == 501 // the app's own answer: it has no POST
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, 4, count())
}

// emulatedPreview starts an emulated Dedalus with one machine running the
// demo app (examples/previewapp) and a preview of its port 3000.
func emulatedPreview(ctx context.Context, t *testing.T) (*dedalus.Client, *dedalus.Machine, *dedalus.Preview) {
	emu, err := emulator.New(emulator.Config{
		Addr: "127.0.0.1:0", APIKey: "router-test", BootDelay: 20 * time.Millisecond, WakeDelay: 50 * time.Millisecond,
		SleepDelay: 10 * time.Millisecond, Seed: 1, IdempotencyTTL: time.Hour, TombstoneTTL: time.Minute,
		DefaultAutosleep: time.Hour, OutputCap: 1 << 20,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	require.NoError(t, emu.Start())
	t.Cleanup(func() { _ = emu.Close(context.Background()) })
	c, err := dedalus.New(dedalus.Options{BaseURL: emu.URL(), APIKey: emu.APIKey(), MinBackoff: 5 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)

	m, err := c.CreateMachine(ctx, dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 1, Autosleep: "never"}, "router-test-create")
	require.NoError(t, err)
	_, err = c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseRunning)
	require.NoError(t, err)
	app, err := filepath.Abs("../../examples/previewapp/app.py")
	require.NoError(t, err)
	res, err := c.RunCommand(ctx, m.MachineID, dedalus.CreateExecutionRequest{
		Command: []string{"sh", "-c", `nohup python3 "$APP" >app.log 2>&1 & echo started`},
		Env:     map[string]string{"APP": app},
	}, "router-test-app")
	require.NoError(t, err)
	require.NoError(t, res.Err())
	pv, err := c.CreatePreview(ctx, m.MachineID, dedalus.CreatePreviewRequest{Port: 3000}, "router-test-preview")
	require.NoError(t, err)
	return c, m, pv
}
