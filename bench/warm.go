package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/testing/harness"
)

const (
	// warmConcurrency is the closed loop's number of clients: each sends
	// its next request as soon as the previous one is answered.
	warmConcurrency = 16
	// warmRounds: the targets take turns, warmRounds times, so that
	// load from the other agents on the machine falls on all of them alike.
	warmRounds = 6
	// warmRound is how long each target is loaded per round at scale 1;
	// then one client alone for warmRoundSolo measures the latency a
	// request pays when the machine is not saturated.
	warmRound     = 2500 * time.Millisecond
	warmRoundSolo = time.Second
	// warmUp is the untimed load before the first round of each target
	// (connections opened, the router's preview woken).
	warmUp = time.Second
)

// warmPrivateRepo is the warm scenario's private preview (login on).
const warmPrivateRepo = "warm-private"

func init() {
	register(Scenario{Order: 3, Name: "warm", Title: "3. Warm path: router vs plain reverse proxy", Run: warmPath})
}

// warmPath measures what the preview router adds to a request once the
// preview is awake, against a plain httputil.ReverseProxy to the same
// upstream.
//
// The upstream is a real preview: a Dedalus (emulator) preview URL in front
// of an app on the preview's machine. The app is a minimal Go HTTP server
// (warmAppSource), not the example Python app, whose GIL would make the app
// the bottleneck and hide the proxies' cost; the upstream is also measured
// directly.
//
// Fairness: the router is the real router binary, a child process with its
// default settings (awake TTL 10s: a wake Update to Temporal every 10s is
// part of its warm path). The baseline runs under the same conditions: its
// own child process (warmProxySource, built by the same Go toolchain),
// the same idle-connection pool as the router's transport and the same
// server settings. Both are loaded by the same closed loop from this
// process, over loopback, in interleaved rounds.
func warmPath(ctx context.Context, e *Env) ([]Row, error) {
	appBin, err := goBuildSource(ctx, filepath.Join(e.Dir, "warm-app"), warmAppSource)
	if err != nil {
		return nil, err
	}
	proxyBin, err := goBuildSource(ctx, filepath.Join(e.Dir, "warm-proxy"), warmProxySource)
	if err != nil {
		return nil, err
	}
	h, err := e.Start(ctx, harness.Options{
		Emulator: emulator.Config{BootDelay: 200 * time.Millisecond, WakeDelay: 300 * time.Millisecond, SleepDelay: 50 * time.Millisecond},
		// Login on, for a fourth target: a private preview of the same app
		// reached with a session cookie ("router+login").
		Login:     true,
		WorkerEnv: []string{"PREVIEW_VISIBILITY_REPOS=bench/" + warmPrivateRepo + "=private"},
	})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	const owner, repo, number = "bench", "warm", 1
	spec := `
machine: {vcpu: 2, memory_mib: 1024, storage_gib: 2, autosleep: 30m}
app: {port: 3000, health_path: /healthz, health_timeout: 30s}
start: {command: [` + appBin + `]}
`
	st, err := openPreview(ctx, h, filepath.Join(e.Dir, "src"), owner, repo, number, spec)
	if err != nil {
		return nil, err
	}
	if st.URL == "" {
		return nil, fmt.Errorf("preview %s/%s#%d is ready without a URL", owner, repo, number)
	}
	_, cookie, err := openPrivatePreview(ctx, h, filepath.Join(e.Dir, "src-private"), owner, warmPrivateRepo, number, spec)
	if err != nil {
		return nil, err
	}
	proxyAddr, stop, err := startPlainProxy(ctx, e, proxyBin, st.URL)
	if err != nil {
		return nil, err
	}
	defer stop()

	targets := []*warmTarget{
		{name: "direct", url: st.URL},
		{name: "proxy", url: "http://" + proxyAddr},
		{name: "router", url: h.RouterURL, host: harness.PreviewHost(owner, repo, number)},
		{name: "router+login", url: h.RouterURL, host: harness.PreviewHost(owner, warmPrivateRepo, number), cookie: cookie},
	}
	return warmMeasure(ctx, e, targets)
}

// startPlainProxy starts the baseline proxy (proxyBin) in front of
// upstream, logging to warm-proxy.log, and waits until it answers; stop
// kills it and closes its log.
func startPlainProxy(ctx context.Context, e *Env, proxyBin, upstream string) (addr string, stop func(), err error) {
	proxyAddr, err := harness.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	logf, err := os.Create(filepath.Join(e.Dir, "warm-proxy.log"))
	if err != nil {
		return "", nil, err
	}
	proxy := exec.Command(proxyBin, proxyAddr, upstream)
	proxy.Stdout, proxy.Stderr = logf, logf
	if err := proxy.Start(); err != nil {
		logf.Close()
		return "", nil, fmt.Errorf("start the plain proxy: %w", err)
	}
	stop = func() {
		_ = proxy.Process.Kill()
		_ = proxy.Wait()
		logf.Close()
	}
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = harness.WaitFor(readyCtx, "plain proxy", harness.HTTPReady("http://"+proxyAddr+"/healthz"))
	cancel()
	if err != nil {
		stop()
		return "", nil, err
	}
	return proxyAddr, stop, nil
}

// warmMeasure warms the targets up, loads them in interleaved rounds and
// returns the scenario's rows.
func warmMeasure(ctx context.Context, e *Env, targets []*warmTarget) ([]Row, error) {
	for _, t := range targets {
		t.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * warmConcurrency, IdleConnTimeout: time.Minute}}
		defer t.client.CloseIdleConnections()
		n, errs, _ := t.load(ctx, warmConcurrency, warmUp, nil)
		if errs > 0 || n == 0 {
			return nil, fmt.Errorf("warm-up through %s: %d failed requests, %d answered", t.name, errs, n)
		}
	}
	round := max(200*time.Millisecond, time.Duration(float64(warmRound)*e.Scale))
	solo := max(100*time.Millisecond, time.Duration(float64(warmRoundSolo)*e.Scale))
	for i := range warmRounds {
		for j := range targets {
			t := targets[(i+j)%len(targets)] // rotate the order: no target always goes first
			n, errs, elapsed := t.load(ctx, warmConcurrency, round, &t.lat)
			t.n, t.errs, t.elapsed = t.n+n, t.errs+errs, t.elapsed+elapsed
			n, errs, _ = t.load(ctx, 1, solo, &t.solo)
			t.nSolo, t.errs = t.nSolo+n, t.errs+errs
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	for _, t := range targets {
		e.Log.Info("warm path", "target", t.name, "requests", t.n, "errors", t.errs, "rps", t.rps(),
			"p50", quantile(t.lat, 0.5), "p99", quantile(t.lat, 0.99), "solo_requests", t.nSolo, "solo_p50", quantile(t.solo, 0.5))
	}
	return warmRows(targets, round, solo), nil
}

// warmRows compares the router (public, then with login) with the plain
// proxy and the upstream reached directly.
func warmRows(targets []*warmTarget, round, solo time.Duration) []Row {
	direct, plain, rt, rtLogin := targets[0], targets[1], targets[2], targets[3]
	errs := direct.errs + plain.errs + rt.errs + rtLogin.errs
	total := direct.n + plain.n + rt.n + rtLogin.n + direct.nSolo + plain.nSolo + rt.nSolo + rtLogin.nSolo
	added := func(t *warmTarget, lat func(*warmTarget) []time.Duration) float64 {
		return US(quantile(lat(t), 0.5) - quantile(lat(direct), 0.5))
	}
	loaded := func(t *warmTarget) []time.Duration { return t.lat }
	alone := func(t *warmTarget) []time.Duration { return t.solo }
	p99r, p99p := quantile(rt.lat, 0.99), quantile(plain.lat, 0.99)
	return []Row{
		{Metric: fmt.Sprintf("router throughput, %d clients", warmConcurrency), Value: rt.rps(), Unit: "req/s", Baseline: F(plain.rps()), Ratio: F(rt.rps() / plain.rps()),
			Note: fmt.Sprintf("baseline: plain httputil.ReverseProxy in its own process, as the router; closed loop, %d interleaved rounds of %s per target", warmRounds, round)},
		{Metric: fmt.Sprintf("p50 added latency, %d clients (p50 through it − p50 direct)", warmConcurrency), Value: added(rt, loaded), Unit: "µs",
			Baseline: F(added(plain, loaded)), Ratio: ratioOf(added(rt, loaded), added(plain, loaded))},
		{Metric: "p50 added latency, 1 client", Value: added(rt, alone), Unit: "µs", Baseline: F(added(plain, alone)), Ratio: ratioOf(added(rt, alone), added(plain, alone)),
			Note: fmt.Sprintf("%s per target and round after the loaded run; direct p50 %.2f ms", solo, MS(quantile(direct.solo, 0.5)))},
		{Metric: fmt.Sprintf("p99 latency through it, %d clients", warmConcurrency), Value: MS(p99r), Unit: "ms", Baseline: F(MS(p99p)), Ratio: F(float64(p99r) / float64(p99p))},
		{Metric: fmt.Sprintf("upstream direct, %d clients", warmConcurrency), Value: direct.rps(), Unit: "req/s",
			Note: fmt.Sprintf("the Dedalus preview URL, a Go app behind it; p50 %.2f ms", MS(quantile(direct.lat, 0.5)))},
		{Metric: fmt.Sprintf("login on: router throughput, %d clients, private preview with a session", warmConcurrency), Value: rtLogin.rps(), Unit: "req/s",
			Baseline: F(rt.rps()), Ratio: F(rtLogin.rps() / rt.rps()), Note: "baseline: the router to a public preview (login off), same process, same rounds"},
		{Metric: fmt.Sprintf("login on: p50 added latency, %d clients", warmConcurrency), Value: added(rtLogin, loaded), Unit: "µs",
			Baseline: F(added(rt, loaded)), Ratio: ratioOf(added(rtLogin, loaded), added(rt, loaded))},
		{Metric: "login on: p50 added latency, 1 client", Value: added(rtLogin, alone), Unit: "µs",
			Baseline: F(added(rt, alone)), Ratio: ratioOf(added(rtLogin, alone), added(rt, alone))},
		{Metric: fmt.Sprintf("failed requests (of %d)", total), Value: float64(errs), Goal: "0", Met: B(errs == 0)},
	}
}

// quantile is the q-quantile of d (d is not changed).
func quantile(d []time.Duration, q float64) time.Duration {
	return harness.Quantile(slices.Clone(d), q)
}

// ratioOf is a/b, or nil when b is not positive (a difference of noisy
// medians can be zero or negative).
func ratioOf(a, b float64) *float64 {
	if b <= 0 {
		return nil
	}
	return F(a / b)
}

// warmTarget is one way to reach the app, and what the load measured.
type warmTarget struct {
	name, url, host string
	cookie          *http.Cookie // the session of a private preview; nil: none
	client          *http.Client

	// Loaded (warmConcurrency clients): requests, failures (both loads),
	// time and latencies.
	n, errs int
	elapsed time.Duration
	lat     []time.Duration
	// One client alone.
	nSolo int
	solo  []time.Duration
}

// load runs a closed loop of c clients against t for d and returns the
// requests answered, the failures and the time it took; lat (if not nil)
// receives every answered request's latency.
func (t *warmTarget) load(ctx context.Context, c int, d time.Duration, lat *[]time.Duration) (answered, failed int, took time.Duration) {
	began := time.Now()
	deadline := began.Add(d)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			n, errs := 0, 0
			for ctx.Err() == nil && time.Now().Before(deadline) {
				start := time.Now()
				code, err := getAs(ctx, t.client, t.url, t.host, t.cookie)
				if err != nil || code != http.StatusOK {
					errs++
					continue
				}
				n++
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			answered, failed = answered+n, failed+errs
			if lat != nil {
				*lat = append(*lat, mine...)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return answered, failed, time.Since(began)
}

func (t *warmTarget) rps() float64 { return float64(t.n) / t.elapsed.Seconds() }

// goBuildSource builds a one-file, standard-library-only Go program into
// dir and returns the binary's path.
func goBuildSource(ctx context.Context, dir, source string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	src, bin := filepath.Join(dir, "main.go"), filepath.Join(dir, filepath.Base(dir))
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GO111MODULE=on", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", src, err, out)
	}
	return bin, nil
}

// warmAppSource is the preview's app: a fixed small page on 127.0.0.1:$PORT.
const warmAppSource = `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	body := []byte("<!doctype html><title>warm</title><p>a preview answering as fast as it can</p>\n")
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(body)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

// warmProxySource is the baseline: a plain httputil.ReverseProxy to one
// upstream (argv: listen address, upstream URL), with the router's
// transport pool (1024 idle, 256 per host) and server settings, and the
// same rewrite (SetURL, SetXForwarded) and streaming (FlushInterval -1).
const warmProxySource = `package main

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

func main() {
	target, err := url.Parse(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport:     t,
		FlushInterval: -1,
	}
	srv := &http.Server{Addr: os.Args[1], Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`
