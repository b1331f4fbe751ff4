// Command chaos is `make chaos`: it runs previews and runner jobs through a
// whole Drydock while breaking it, then checks that nothing was lost,
// leaked or duplicated. It exits 1 when an invariant breaks.
//
// What breaks, all in one run (sizes are flags):
//   - the worker is SIGKILLed at random moments while 20 previews provision
//     and 20 runner jobs run, and restarted each time;
//   - the Dedalus emulator answers 20% of API calls 503, 5% 429 with
//     retry_after_ms and resets 5% of connections (half before, half after
//     doing the work, so that the answer to a mutation is lost);
//   - the Temporal dev server (persisted database) is restarted mid-run;
//   - every webhook is delivered three times at once; some pull requests
//     are closed before their opened event has been processed; 500
//     deliveries arrive within one second;
//   - the runner pools: cancelled jobs, terminated RunnerJobs and pool,
//     GitHub faults on runner registration, a RUNNER_POOLS change, and a
//     persistent-mode pool whose jobs run on other jobs' machines (see
//     runners.go).
//
// The driver plays GitHub: a delivery that gets no 2xx (the webhook server
// is up but Temporal is restarting, say) is redelivered until it does, as
// an operator redelivers failed deliveries from the App's settings.
//
// Invariants checked at the end: every preview is ready at its newest head
// or torn down, as its events say; every job completed on GitHub's side and
// its RunnerJob workflow completed; exactly one machine per pull request and
// no machine the workflows do not know (emulator creations = machines in
// the histories); no machine left once all pull requests close and the pool
// drains; no workflow left open except the pools' entity workflows; and the
// runner invariants of runners.go (no machine slept or deleted under a busy
// runner, no lease left by a finished job, no healthy machine deleted,
// sizes and setups from one configuration).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/internal/testing/harness"
)

const (
	owner    = "chaos"
	repoName = "app"
	// repoName2 is the second repository whose jobs pool "chaos" (isolation
	// per-repo) takes, alternating with repoName's.
	repoName2 = "lib"
	pool      = "chaos"
)

var jobLabels = []string{"self-hosted", "linux", "chaos"}

type options struct {
	prs, jobs   int
	burst       int
	kills       int
	faults      bool
	restart     bool
	seed        uint64
	timeout     time.Duration
	keep        bool
	maxMachines int
	killEvery   time.Duration
	// Runner pool scenarios (see runners.go).
	persistentJobs, cancels, terminateJobs   int
	githubFaults, reconfigure, terminatePool bool
	// The cluster run (cluster.go).
	cluster   bool
	replicas  int
	coldBurst int
}

func main() {
	var o options
	flag.IntVar(&o.prs, "prs", 20, "pull requests")
	flag.IntVar(&o.jobs, "jobs", 20, "runner jobs")
	flag.IntVar(&o.burst, "burst", 500, "deliveries in the one-second burst")
	flag.IntVar(&o.kills, "kills", 20, "how many times to SIGKILL and restart the worker, at random moments")
	flag.BoolVar(&o.faults, "faults", true, "inject Dedalus API faults (503, 429, resets)")
	flag.BoolVar(&o.restart, "restart-temporal", true, "restart the Temporal dev server mid-run")
	flag.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock; printed so a run can be repeated)")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up waiting for each convergence step after this long")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory (every process's log)")
	flag.IntVar(&o.maxMachines, "max-machines", 5, "the runner pool's max_machines")
	flag.DurationVar(&o.killEvery, "kill-every", 3*time.Second, "mean interval between worker kills")
	flag.IntVar(&o.persistentJobs, "persistent-jobs", 8, "jobs for the persistent-mode pool (GitHub hands them to any awake runner)")
	flag.IntVar(&o.cancels, "cancels", 3, "jobs cancelled on GitHub, alternately while queued and while waiting for pickup")
	flag.IntVar(&o.terminateJobs, "terminate-jobs", 2, "RunnerJob workflows terminated while they hold a lease")
	flag.BoolVar(&o.githubFaults, "github-faults", true, "GitHub answers runner registrations with 502s and secondary rate limits")
	flag.BoolVar(&o.reconfigure, "reconfigure", true, "change the pool's RUNNER_POOLS entry mid-run and restart the worker with it")
	flag.BoolVar(&o.terminatePool, "terminate-pool", true, "terminate the pool's workflow once mid-run")
	flag.BoolVar(&o.cluster, "cluster", false, "run on a make-cluster Temporal ($DRYDOCK_CLUSTER_DIR, or one started here) with the cluster's faults and invariants (cluster.go)")
	flag.IntVar(&o.replicas, "replicas", 0, "workers, webhook servers and routers (default: 2 with -cluster, else 1)")
	flag.IntVar(&o.coldBurst, "cold-burst", 200, "with -cluster: requests in the cold burst split across the routers")
	flag.Parse()
	if o.replicas == 0 {
		o.replicas = 1
		if o.cluster {
			o.replicas = 2
		}
	}
	if o.cluster && o.replicas < 2 {
		fmt.Fprintln(os.Stderr, "chaos: -cluster kills one replica of each binary: it needs -replicas 2 or more")
		os.Exit(2)
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o))
}

func run(ctx context.Context, o options) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if os.Getenv("TEMPORAL_CLI") == "" {
		fmt.Fprintln(os.Stderr, "chaos: TEMPORAL_CLI is not set; run it as `make chaos`")
		return 2
	}
	dir, err := os.MkdirTemp("", "drydock-chaos-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	c := &chaos{o: o, log: log, dir: dir, rng: rand.New(rand.NewPCG(o.seed, 0x5eed)), began: time.Now()}
	log.Info("chaos run", "seed", o.seed, "prs", o.prs, "jobs", o.jobs, "dir", dir)
	err = c.run(ctx)
	failed := err != nil || len(c.broken) > 0
	if c.h != nil { // nil: the stack never started; the error says why
		c.report(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: run failed:", err)
	}
	if failed || o.keep {
		fmt.Fprintf(os.Stderr, "chaos: logs of every process kept in %s (seed %d)\n", dir, o.seed)
	} else {
		os.RemoveAll(dir)
	}
	if failed {
		return 1
	}
	return 0
}

// chaos is one run.
type chaos struct {
	o     options
	log   *slog.Logger
	dir   string
	rng   *rand.Rand
	rngMu sync.Mutex
	began time.Time

	h    *harness.Harness
	repo *harness.GitRepo
	prs  []*pr
	jobs []*job
	rc   runnerChaos
	// workerMu serializes the worker's kills and restarts.
	workerMu sync.Mutex
	// The cluster run's record (cluster.go).
	clusterMu           sync.Mutex
	clusterDone         []string
	lagRuns, lagDeleted atomic.Int64

	// counters
	deliveries, redeliveries, non2xx atomic.Int64
	kills, temporalRestarts          atomic.Int64
	burstAccepted, burstElapsed      atomic.Int64

	broken []string
	counts [][2]string
}

// pr is one pull request's script and the state its events leave it in.
type pr struct {
	number int
	shas   []string // head SHAs pushed, in order
	open   bool     // after all events so far
	group  string
}

func (c *chaos) intn(n int) int {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.rng.IntN(n)
}

func (c *chaos) jitter(mean time.Duration) time.Duration {
	return mean/2 + time.Duration(c.intn(int(mean)+1))
}

func (c *chaos) fail(format string, args ...any) {
	c.broken = append(c.broken, fmt.Sprintf(format, args...))
}

func (c *chaos) count(name string, v any) {
	c.counts = append(c.counts, [2]string{name, fmt.Sprint(v)})
}

// script decides each pull request's fate and adds the jobs to GitHub.
func (c *chaos) script() error {
	sha, err := c.repo.Commit("base")
	if err != nil {
		return err
	}
	groups := []string{"pushed", "steady", "closed-later", "closed-early", "reordered"}
	for i := range c.o.prs {
		p := &pr{number: i + 1, shas: []string{sha}, group: groups[i%len(groups)]}
		c.prs = append(c.prs, p)
	}
	c.scriptJobs()
	return nil
}

const previewSpec = `
machine: {vcpu: 1, memory_mib: 512, storage_gib: 2, autosleep: 10m}
app: {port: 3000, health_path: /healthz, health_timeout: 60s}
start: {command: [python3, examples/previewapp/app.py]}
`

func (c *chaos) report(w *os.File) {
	st := c.h.Emu.Stats()
	head := [][2]string{
		{"seed", fmt.Sprint(c.o.seed)},
		{"pull requests / runner jobs", fmt.Sprintf("%d / %d", len(c.prs), len(c.jobs))},
		{"worker SIGKILLs (each followed by a restart)", fmt.Sprint(c.kills.Load())},
		{"Temporal dev server restarts", fmt.Sprint(c.temporalRestarts.Load())},
		{"webhook deliveries (first attempts)", fmt.Sprint(c.deliveries.Load())},
		{"redeliveries after a non-2xx or no answer", fmt.Sprint(c.redeliveries.Load())},
		{"burst: deliveries accepted / sent in", fmt.Sprintf("%d/%d in %s", c.burstAccepted.Load(), c.o.burst, time.Duration(c.burstElapsed.Load()).Round(time.Millisecond))},
		{"Dedalus API calls answered with an injected fault", fmt.Sprint(st.FaultsInjected)},
		{"machines created (emulator)", fmt.Sprint(st.Creates)},
		{"idempotent replays (emulator)", fmt.Sprint(st.IdempotentReplays)},
		{"wall time", time.Since(c.began).Round(time.Second).String()},
	}
	fmt.Fprintln(w, "\nchaos run:")
	for _, r := range append(append(head, c.runnerCounts()...), c.counts...) {
		fmt.Fprintf(w, "  %-62s %s\n", r[0], r[1])
	}
	if len(c.broken) == 0 {
		fmt.Fprintln(w, "\nall invariants hold")
		return
	}
	sort.Strings(c.broken)
	fmt.Fprintf(w, "\n%d invariant(s) broken:\n", len(c.broken))
	for _, b := range c.broken {
		fmt.Fprintln(w, "  -", b)
	}
}
