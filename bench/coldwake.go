package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/harness"
)

const (
	coldWakeDelay = 300 * time.Millisecond
	coldBursts    = 3
)

func init() {
	register(Scenario{Order: 2, Name: "coldwake", Title: "2. Cold wake: 1,000 concurrent requests, one sleeping preview", Run: coldWake})
}

// coldWake lets a preview fall asleep, then sends 1,000 requests at once
// through the router: exactly one wake call should reach Dedalus and every
// request should be answered by the woken app. Done coldBursts times; the
// same burst against the awake preview is the baseline.
func coldWake(ctx context.Context, e *Env) ([]Row, error) {
	h, err := e.Start(ctx, harness.Options{
		Emulator:  emulator.Config{BootDelay: 200 * time.Millisecond, WakeDelay: coldWakeDelay, SleepDelay: 50 * time.Millisecond},
		RouterEnv: []string{"ROUTER_AWAKE_TTL=1s", "ROUTER_WAKE_TIMEOUT=60s"},
	})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	const owner, repo, number = "bench", "coldwake", 1
	st, err := openPreview(ctx, h, filepath.Join(e.Dir, "src"), owner, repo, number, demoSpec("2s"))
	if err != nil {
		return nil, err
	}
	n := e.N(1000)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}}
	burst := func() (*harness.Samples, int) {
		var lat harness.Samples
		var mu sync.Mutex
		errs := 0
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				began := time.Now()
				code, err := get(ctx, client, h.RouterURL, harness.PreviewHost(owner, repo, number))
				if err != nil || code != http.StatusOK {
					mu.Lock()
					errs++
					mu.Unlock()
					return
				}
				lat.Add(time.Since(began))
			}()
		}
		close(start)
		wg.Wait()
		return &lat, errs
	}

	var cold, warm harness.Samples
	maxWakeCalls, totalErrs, warmErrs := int64(0), 0, 0
	for i := range coldBursts {
		if err := waitMachinePhase(ctx, h, st.MachineID, "sleeping", time.Minute); err != nil {
			return nil, fmt.Errorf("burst %d: %w", i+1, err)
		}
		time.Sleep(1500 * time.Millisecond) // past the router's awake TTL: it must ask again
		before := h.Emu.Stats().WakeRequests
		lat, errs := burst()
		calls := h.Emu.Stats().WakeRequests - before
		maxWakeCalls = max(maxWakeCalls, calls)
		totalErrs += errs
		for _, d := range lat.Values() {
			cold.Add(max(0, d-coldWakeDelay))
		}
		e.Log.Info("cold burst", "n", n, "wake_calls", calls, "errors", errs, "p50", lat.Quantile(0.5), "p99", lat.Quantile(0.99))
		// Baseline: the same burst while the machine is awake.
		lat, errs = burst()
		warmErrs += errs
		for _, d := range lat.Values() {
			warm.Add(d)
		}
	}
	return []Row{
		{Metric: fmt.Sprintf("wake calls reaching Dedalus per burst (max of %d)", coldBursts), Value: float64(maxWakeCalls), Goal: "1", Met: B(maxWakeCalls == 1)},
		{Metric: fmt.Sprintf("failed requests (of %d)", n*coldBursts), Value: float64(totalErrs), Goal: "0", Met: B(totalErrs == 0)},
		{Metric: "p50 latency minus the 300 ms wake delay", Value: MS(cold.Quantile(0.5)), Unit: "ms", Baseline: F(MS(warm.Quantile(0.5))), Note: "baseline: same burst, preview awake"},
		{Metric: "p99 latency minus the 300 ms wake delay", Value: MS(cold.Quantile(0.99)), Unit: "ms", Baseline: F(MS(warm.Quantile(0.99)))},
		{Metric: "failed requests in the awake bursts", Value: float64(warmErrs), Goal: "0", Met: B(warmErrs == 0)},
	}, nil
}

// get sends GET / with the given Host and drains the answer.
func get(ctx context.Context, c *http.Client, base, host string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return 0, err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
