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
	"github.com/drydock-dev/drydock/internal/testing/harness"
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
	routerEnv := []string{"ROUTER_AWAKE_TTL=1s", "ROUTER_WAKE_TIMEOUT=60s"}
	if e.Pprof != "" {
		// The trace of one burst, and the router's "preview woken" lines
		// (the wake's own latency) in its log.
		routerEnv = append(routerEnv, "ROUTER_PPROF=true", "LOG_LEVEL=info")
	}
	h, err := e.Start(ctx, harness.Options{
		Emulator:  emulator.Config{BootDelay: 200 * time.Millisecond, WakeDelay: coldWakeDelay, SleepDelay: 50 * time.Millisecond},
		RouterEnv: routerEnv,
		// Login on: the same bursts at a private preview with a session
		// cookie measure what the login adds (the public one is "auth off").
		Login:     true,
		WorkerEnv: []string{"PREVIEW_VISIBILITY_REPOS=bench/" + coldPrivateRepo + "=private"},
	})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	public, private, err := coldPreviews(ctx, e, h)
	if err != nil {
		return nil, err
	}
	n := e.N(1000)
	c := &coldRun{e: e, h: h, n: n,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}}}
	var off, on burstStats
	for i := range coldBursts {
		if err := c.round(ctx, i, public, private, &off, &on); err != nil {
			return nil, err
		}
	}
	return coldRows(n, &off, &on), nil
}

// coldPreviews opens the scenario's two previews, public and private (with
// benchUser's session), and returns them as burst targets. Their app is
// the warm scenario's minimal Go server (warmAppSource), not the example
// Python app: a burst of 1,000 measures the router and the wake, not the
// Python app's GIL (with it, the same awake burst's p50 moved between 0.8
// and 2.4 s within one run).
func coldPreviews(ctx context.Context, e *Env, h *harness.Harness) (public, private burstTarget, err error) {
	const owner, repo, number = "bench", "coldwake", 1
	appBin, err := goBuildSource(ctx, filepath.Join(e.Dir, "cold-app"), warmAppSource)
	if err != nil {
		return public, private, err
	}
	spec := `
machine: {vcpu: 1, memory_mib: 512, storage_gib: 2, autosleep: 2s}
app: {port: 3000, health_path: /healthz, health_timeout: 30s}
start: {command: [` + appBin + `]}
`
	st, err := openPreview(ctx, h, filepath.Join(e.Dir, "src"), owner, repo, number, spec)
	if err != nil {
		return public, private, err
	}
	stP, cookie, err := openPrivatePreview(ctx, h, filepath.Join(e.Dir, "src-private"), owner, coldPrivateRepo, number, spec)
	if err != nil {
		return public, private, err
	}
	public = burstTarget{host: harness.PreviewHost(owner, repo, number), machine: st.MachineID}
	private = burstTarget{host: harness.PreviewHost(owner, coldPrivateRepo, number), machine: stP.MachineID, cookie: cookie}
	return public, private, nil
}

// coldRun is the stack the cold bursts go through, and their size.
type coldRun struct {
	e      *Env
	h      *harness.Harness
	client *http.Client
	n      int // requests per burst
}

// burst sends n requests at once to bt through the router and returns the
// latencies of those answered 200 and how many were not.
func (c *coldRun) burst(ctx context.Context, bt burstTarget) (*harness.Samples, int) {
	var lat harness.Samples
	var mu sync.Mutex
	errs := 0
	first := ""
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range c.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			began := time.Now()
			code, err := getAs(ctx, c.client, c.h.RouterURL, bt.host, bt.cookie)
			if err != nil || code != http.StatusOK {
				mu.Lock()
				errs++
				if first == "" {
					first = fmt.Sprintf("HTTP %d %v", code, err)
				}
				mu.Unlock()
				return
			}
			lat.Add(time.Since(began))
		}()
	}
	close(start)
	wg.Wait()
	if errs > 0 {
		c.e.Log.Warn("burst: failed requests", "host", bt.host, "failed", errs, "first", first)
	}
	return &lat, errs
}

// round is burst i: once both machines sleep, a cold burst at each (auth
// off and on taking turns going first), then the same bursts while the
// machines are awake (the baseline).
func (c *coldRun) round(ctx context.Context, i int, public, private burstTarget, off, on *burstStats) error {
	for _, bt := range []burstTarget{public, private} {
		if err := waitMachinePhase(ctx, c.h, bt.machine, "sleeping", time.Minute); err != nil {
			return fmt.Errorf("burst %d: %w", i+1, err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // past the router's awake TTL: it must ask again
	// Auth off and on take turns going first.
	order := []*burstStats{off, on}
	targets := []burstTarget{public, private}
	if i%2 == 1 {
		order[0], order[1], targets[0], targets[1] = order[1], order[0], targets[1], targets[0]
	}
	for k, bt := range targets {
		if err := c.coldBurst(ctx, c.e.Pprof != "" && i == 0 && k == 0, bt, order[k]); err != nil {
			return err
		}
	}
	// Baseline: the same bursts while the machines are awake.
	for k, bt := range targets {
		lat, errs := c.burst(ctx, bt)
		c.e.Log.Info("awake burst", "host", bt.host, "n", c.n, "errors", errs, "p50", lat.Quantile(0.5), "p99", lat.Quantile(0.99))
		order[k].warmErrs += errs
		for _, d := range lat.Values() {
			order[k].warm.Add(d)
		}
	}
	return nil
}

// coldBurst sends a burst at bt's sleeping preview (traced when trace) and
// adds to bs its latencies minus the wake delay, the wake calls that
// reached Dedalus and the wake times.
func (c *coldRun) coldBurst(ctx context.Context, trace bool, bt burstTarget, bs *burstStats) error {
	h := c.h
	before := h.Emu.Stats().WakeRequests
	w0, err := wakeTimes(ctx, h)
	if err != nil {
		return err
	}
	var lat *harness.Samples
	var errs int
	if trace {
		err := c.e.trace(ctx, h.RouterAdminURL, 2*time.Second, "coldwake-burst.trace", func() { lat, errs = c.burst(ctx, bt) })
		if err != nil {
			return err
		}
	} else {
		lat, errs = c.burst(ctx, bt)
	}
	calls := h.Emu.Stats().WakeRequests - before
	w1, err := wakeTimes(ctx, h)
	if err != nil {
		return err
	}
	bs.wakes = bs.wakes.plus(w1.minus(w0))
	bs.first.Add(max(0, lat.Quantile(0)-coldWakeDelay))
	bs.maxWakeCalls = max(bs.maxWakeCalls, calls)
	bs.errs += errs
	for _, d := range lat.Values() {
		bs.cold.Add(max(0, d-coldWakeDelay))
	}
	c.e.Log.Info("cold burst", "host", bt.host, "n", c.n, "wake_calls", calls, "errors", errs,
		"first", lat.Quantile(0), "p50", lat.Quantile(0.5), "p99", lat.Quantile(0.99))
	return nil
}

// coldRows are the scenario's rows: login off (the public preview) against
// the awake baseline, then login on against login off.
func coldRows(n int, off, on *burstStats) []Row {
	cold, warm, maxWakeCalls, totalErrs, warmErrs := &off.cold, &off.warm, off.maxWakeCalls, off.errs, off.warmErrs
	coldP50, warmP50 := MS(cold.Quantile(0.5)), MS(warm.Quantile(0.5))
	return []Row{
		{Metric: fmt.Sprintf("wake calls reaching Dedalus per burst (max of %d)", coldBursts), Value: float64(maxWakeCalls), Goal: "1", Met: B(maxWakeCalls == 1)},
		{Metric: fmt.Sprintf("failed requests (of %d)", n*coldBursts), Value: float64(totalErrs), Goal: "0", Met: B(totalErrs == 0)},
		{Metric: "p50 latency minus the 300 ms wake delay", Value: coldP50, Unit: "ms", Baseline: F(warmP50),
			Goal: "≤ baseline + 15 ms", Met: B(coldP50 <= warmP50+15), Note: fmt.Sprintf("baseline: same burst, preview awake; %+.0f ms", coldP50-warmP50)},
		{Metric: "p99 latency minus the 300 ms wake delay", Value: MS(cold.Quantile(0.99)), Unit: "ms", Baseline: F(MS(warm.Quantile(0.99)))},
		{Metric: "failed requests in the awake bursts", Value: float64(warmErrs), Goal: "0", Met: B(warmErrs == 0)},
		{Metric: "where a cold burst's time goes: wake Update round trip, mean (router)", Value: off.wakes.update(), Unit: "ms",
			Baseline: F(off.wakes.dedalus()), Ratio: ratioOf(off.wakes.update(), off.wakes.dedalus()),
			Note: "baseline: the Dedalus wake inside it (the worker's WakeAndWait); the rest is Temporal, the workflow and the router"},
		{Metric: "where a cold burst's time goes: first answer minus the wake delay, p50 over bursts", Value: MS(off.first.Quantile(0.5)), Unit: "ms",
			Baseline: F(coldP50), Note: "baseline: the burst's p50 minus the wake delay; the difference is the fan-out to the woken preview"},
		{Metric: fmt.Sprintf("login on: wake calls per burst, private preview with a session (max of %d)", coldBursts), Value: float64(on.maxWakeCalls), Goal: "1", Met: B(on.maxWakeCalls == 1)},
		{Metric: fmt.Sprintf("login on: failed requests (of %d, cold and awake)", 2*n*coldBursts), Value: float64(on.errs + on.warmErrs), Goal: "0", Met: B(on.errs+on.warmErrs == 0)},
		{Metric: "login on: p50 latency minus the 300 ms wake delay", Value: MS(on.cold.Quantile(0.5)), Unit: "ms", Baseline: F(MS(off.cold.Quantile(0.5))),
			Ratio: ratioOf(MS(on.cold.Quantile(0.5)), MS(off.cold.Quantile(0.5))), Note: "baseline: login off (the public preview), same router, same run, bursts taking turns"},
		{Metric: "login on: p99 latency minus the 300 ms wake delay", Value: MS(on.cold.Quantile(0.99)), Unit: "ms", Baseline: F(MS(off.cold.Quantile(0.99))),
			Ratio: ratioOf(MS(on.cold.Quantile(0.99)), MS(off.cold.Quantile(0.99)))},
		{Metric: "login on: p50 latency of the awake bursts", Value: MS(on.warm.Quantile(0.5)), Unit: "ms", Baseline: F(MS(off.warm.Quantile(0.5))),
			Ratio: ratioOf(MS(on.warm.Quantile(0.5)), MS(off.warm.Quantile(0.5)))},
	}
}

// coldPrivateRepo is the cold-wake scenario's private preview (login on);
// benchUser may read it.
const (
	coldPrivateRepo = "coldwake-private"
	benchUser       = "bench-reviewer"
)

// burstTarget is a preview a burst goes to, with the session cookie it needs.
type burstTarget struct {
	host, machine string
	cookie        *http.Cookie
}

// burstStats accumulates one kind of burst (login off or on).
type burstStats struct {
	cold, warm     harness.Samples
	first          harness.Samples // each cold burst's first answer, minus the wake delay
	wakes          wakeTotals
	maxWakeCalls   int64
	errs, warmErrs int
}

// getAs sends GET / with the given Host and cookie (nil: none) and drains
// the answer.
func getAs(ctx context.Context, c *http.Client, base, host string, cookie *http.Cookie) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return 0, err
	}
	req.Host = host
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// wakeTotals are the router's wake Updates (drydock_router_wake_duration_seconds)
// and the worker's Dedalus wakes (drydock_machine_wake_seconds): sums in
// seconds and counts.
type wakeTotals struct {
	updateSum, dedalusSum     float64
	updateCount, dedalusCount uint64
}

func wakeTimes(ctx context.Context, h *harness.Harness) (wakeTotals, error) {
	var w wakeTotals
	var err error
	if w.updateSum, w.updateCount, err = histogram(ctx, h.RouterAdminURL, "drydock_router_wake_duration_seconds"); err != nil {
		return w, err
	}
	w.dedalusSum, w.dedalusCount, err = histogram(ctx, h.WorkerAdminURL, "drydock_machine_wake_seconds")
	return w, err
}

func (w wakeTotals) minus(o wakeTotals) wakeTotals {
	return wakeTotals{w.updateSum - o.updateSum, w.dedalusSum - o.dedalusSum, w.updateCount - o.updateCount, w.dedalusCount - o.dedalusCount}
}

func (w wakeTotals) plus(o wakeTotals) wakeTotals {
	return wakeTotals{w.updateSum + o.updateSum, w.dedalusSum + o.dedalusSum, w.updateCount + o.updateCount, w.dedalusCount + o.dedalusCount}
}

// update and dedalus are the mean wake Update and Dedalus wake, in ms.
func (w wakeTotals) update() float64  { return meanMS(w.updateSum, w.updateCount) }
func (w wakeTotals) dedalus() float64 { return meanMS(w.dedalusSum, w.dedalusCount) }

func meanMS(sum float64, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return sum / float64(n) * 1000
}
