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
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/githubtest"
	"github.com/drydock-dev/drydock/internal/harness"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
	"go.temporal.io/sdk/temporal"
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

func (c *chaos) run(ctx context.Context) error {
	var cluster *harness.Cluster
	if c.o.cluster {
		var stop func()
		var err error
		if cluster, stop, err = c.startCluster(ctx); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		defer stop()
	}
	h, err := harness.Start(ctx, harness.Options{
		Cluster:         cluster,
		Replicas:        c.o.replicas,
		Dir:             c.dir,
		PersistTemporal: true,
		Emulator: emulator.Config{BootDelay: 100 * time.Millisecond, WakeDelay: 100 * time.Millisecond, SleepDelay: 20 * time.Millisecond,
			Seed: int64(c.o.seed), Observe: c.observe},
		Pools: func(h *harness.Harness) (string, error) { return c.poolsAt(h, 1) },
		// Only the chaos owner may use this Drydock: every delivery crosses the allow-list.
		AllowedOwners: owner,
		// The reconciler runs once, at the end, on demand.
		WorkerEnv: []string{"RECONCILE_EVERY=0", "RECONCILE_GRACE=1s"},
	})
	if err != nil {
		return err
	}
	c.h = h
	defer h.Close()
	if c.repo, err = harness.NewGitRepo(filepath.Join(c.dir, "src")); err != nil {
		return err
	}
	h.GH.SetFile(owner, repoName, "main", ".drydock/preview.yml", previewSpec)
	if err := c.script(); err != nil {
		return err
	}

	if c.o.faults {
		// Probabilities are tried in the order reset, 503, 429, reset_after:
		// these conditional values give 2.5% resets before processing, 20% 503,
		// 5% 429 and 2.5% resets after processing, of all API calls.
		if err := h.Emu.SetFaults(emulator.Faults{Routes: map[string]emulator.FaultRule{"*": {
			Reset: 0.025, Error503: 0.2 / 0.975, Error429: 0.05 / (0.975 * 0.8), RetryAfterMS: 200,
			ResetAfter: 0.025 / (0.975 * 0.8 * 0.9359),
		}}}); err != nil {
			return err
		}
	}
	killCtx, stopKills := context.WithCancel(ctx)
	var killer sync.WaitGroup
	if c.o.kills > 0 {
		killer.Add(1)
		go func() { defer killer.Done(); c.killWorker(killCtx) }()
	}
	stopKilling := func() {
		stopKills()
		killer.Wait()
		if !h.Worker.Running() {
			_ = h.Worker.Start()
		}
	}
	defer stopKilling()

	// Phase 1: every PR opened and every job queued, each delivery three times.
	c.log.Info("phase 1: open pull requests and queue jobs")
	var wg sync.WaitGroup
	for _, p := range c.prs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch p.group {
			case "closed-early":
				// Closed before the opened event has been processed.
				c.prEvent(ctx, p, "opened", 0)
				c.prEvent(ctx, p, "closed", 0)
			case "reordered":
				// GitHub does not promise delivery order: the PR was opened
				// and closed, and closed is delivered first.
				c.prEvent(ctx, p, "closed", 0)
				body, err := c.prBody(p, "opened", 0)
				if err != nil {
					c.fail("fixture: %v", err)
					return
				}
				c.deliver(ctx, "pull_request", fmt.Sprintf("pr-%d-opened-0", p.number), body, 3)
			default:
				c.prEvent(ctx, p, "opened", 0)
			}
		}()
		time.Sleep(30 * time.Millisecond)
	}
	for _, j := range c.jobs {
		wg.Add(1)
		go func() { defer wg.Done(); c.jobEvent(ctx, j, "queued", fmt.Sprintf("queued-%d", j.id)) }()
		time.Sleep(30 * time.Millisecond)
	}
	wg.Wait()

	// The runner scenarios run beside the rest until the jobs settle.
	scenarioCtx, stopScenarios := context.WithCancel(ctx)
	var scenarios sync.WaitGroup
	scenarioDeadline := time.Now().Add(c.o.timeout)
	for _, f := range []func(){
		func() { c.cancelJobs(scenarioCtx, scenarioDeadline) },
		func() { c.terminateJobs(scenarioCtx, scenarioDeadline) },
		func() {
			if c.o.githubFaults {
				c.githubFaults(scenarioCtx)
			}
		},
	} {
		scenarios.Add(1)
		go func() { defer scenarios.Done(); f() }()
	}
	if c.o.cluster {
		for _, f := range []func(){func() { c.clusterFaults(scenarioCtx) }, func() { c.reconcileWhileLagging(scenarioCtx) }} {
			scenarios.Add(1)
			go func() { defer scenarios.Done(); f() }()
		}
	}
	defer func() { stopScenarios(); scenarios.Wait() }()

	// Phase 2: Temporal restarts while machines are being provisioned.
	time.Sleep(3 * time.Second)
	if c.o.restart {
		c.log.Info("phase 2: restarting the Temporal dev server")
		began := time.Now()
		if err := h.Temporal.Restart(ctx); err != nil {
			return fmt.Errorf("restart Temporal: %w", err)
		}
		c.temporalRestarts.Add(1)
		c.log.Info("Temporal is back", "after", time.Since(began).Round(time.Millisecond))
	}

	// Phase 3: a burst of deliveries within one second.
	c.log.Info("phase 3: burst", "deliveries", c.o.burst)
	if c.o.cluster {
		c.burstWithAWebhookDown(ctx)
	} else {
		c.burst(ctx)
	}

	// Phase 3b: the pool's configuration changes (the worker restarts with
	// it), and its workflow is terminated once.
	if c.o.reconfigure {
		c.log.Info("phase 3b: new RUNNER_POOLS, worker restarted")
		if err := c.reconfigure(); err != nil {
			return fmt.Errorf("reconfigure: %w", err)
		}
	}
	if c.o.terminatePool {
		time.Sleep(2 * time.Second)
		c.log.Info("phase 3b: terminating the pool workflow")
		if err := c.terminatePool(ctx); err != nil {
			c.fail("terminate the pool workflow: %v", err)
		}
	}

	// Phase 4: pushes and closes.
	c.log.Info("phase 4: pushes and closes")
	for _, p := range c.prs {
		switch p.group {
		case "pushed":
			sha, err := c.repo.Commit(fmt.Sprintf("push to #%d", p.number))
			if err != nil {
				return err
			}
			p.shas = append(p.shas, sha)
			wg.Add(1)
			go func() { defer wg.Done(); c.prEvent(ctx, p, "synchronize", 1) }()
		case "closed-later":
			wg.Add(1)
			go func() { defer wg.Done(); c.prEvent(ctx, p, "closed", 0) }()
		}
	}
	wg.Wait()

	// Phase 5: convergence with the faults still on.
	c.log.Info("phase 5: waiting for every preview and job to settle")
	if err := c.waitPreviews(ctx, time.Now().Add(c.o.timeout)); err != nil {
		c.fail("%v", err)
	}
	c.waitJobs(ctx, time.Now().Add(c.o.timeout))
	stopScenarios()
	scenarios.Wait()
	c.checkLeases(ctx)
	// The kills go on while everything settles, until all have been made.
	killer.Wait()
	stopKilling()
	if err := c.waitPreviews(ctx, time.Now().Add(c.o.timeout)); err != nil {
		c.fail("%v", err)
	}
	c.checkOpenPreviews(ctx)

	// Phase 6: every PR closes; the pool drains.
	c.log.Info("phase 6: closing every pull request and draining the pool")
	for _, p := range c.prs {
		if p.open {
			wg.Add(1)
			go func() { defer wg.Done(); c.prEvent(ctx, p, "closed", 0) }()
		}
	}
	wg.Wait()
	if err := c.waitPreviews(ctx, time.Now().Add(c.o.timeout)); err != nil {
		c.fail("%v", err)
	}
	for _, name := range []string{pool, persistentPool} {
		if err := h.TC.SignalWorkflow(ctx, runnerapi.PoolWorkflowID(name), "", runnerapi.SignalDrain, runnerapi.DrainRequest{}); err != nil {
			c.fail("drain pool %s: %v", name, err)
		}
	}
	_ = h.Emu.SetFaults(emulator.Faults{})
	if c.o.cluster {
		c.coldBurst(ctx, c.o.coldBurst)
		c.clusterCounts()
	}
	if c.o.terminatePool {
		// The terminated run's machines are nobody's: the reconciler's.
		c.waitPoolsDrained(ctx, time.Now().Add(c.o.timeout))
		c.reconcile(ctx)
	}
	c.waitNoMachines(ctx, time.Now().Add(c.o.timeout))
	c.checkMachines(ctx)
	c.checkOpenWorkflows(ctx)
	c.checkRunnerInvariants(ctx)
	return nil
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

// killWorker SIGKILLs the worker at random moments and restarts it.
func (c *chaos) killWorker(ctx context.Context) {
	for c.kills.Load() < int64(c.o.kills) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.jitter(c.o.killEvery)):
		}
		c.workerMu.Lock()
		c.h.Worker.Kill()
		c.kills.Add(1)
		time.Sleep(time.Duration(100+c.intn(900)) * time.Millisecond)
		if err := c.h.Worker.Start(); err != nil {
			c.log.Error("restart the worker", "err", err)
		}
		c.workerMu.Unlock()
	}
}

// deliver plays GitHub: the delivery is sent three times at once, and each
// copy is redelivered until it gets a 2xx.
func (c *chaos) deliver(ctx context.Context, event, delivery string, body []byte, copies int) {
	var wg sync.WaitGroup
	for range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.deliverOnce(ctx, event, delivery, body)
		}()
	}
	wg.Wait()
}

func (c *chaos) deliverOnce(ctx context.Context, event, delivery string, body []byte) bool {
	backoff := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if attempt == 0 {
			c.deliveries.Add(1)
		} else {
			c.redeliveries.Add(1)
		}
		code, err := c.h.Deliver(ctx, event, delivery, body)
		if err == nil && code < 300 {
			return true
		}
		c.non2xx.Add(1)
		if err == nil && code < 500 {
			c.log.Error("delivery refused", "event", event, "delivery", delivery, "status", code)
			c.fail("delivery %s (%s) refused with HTTP %d", delivery, event, code)
			return false
		}
		if ctx.Err() != nil || attempt > 40 {
			c.fail("delivery %s (%s) never accepted: %v / HTTP %d", delivery, event, err, code)
			return false
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 3*time.Second)
	}
}

func (c *chaos) prBody(p *pr, action string, shaIndex int) ([]byte, error) {
	// Label is what a labeled delivery is about: one the preview policy
	// ignores.
	return c.h.PullRequest(action, ghfixture.PR{Owner: owner, Repo: repoName, Number: p.number,
		HeadSHA: p.shas[shaIndex], HeadRef: fmt.Sprintf("feature-%d", p.number), CloneURL: c.repo.Dir, Label: "chaos-noise"})
}

func (c *chaos) prEvent(ctx context.Context, p *pr, action string, shaIndex int) {
	body, err := c.prBody(p, action, shaIndex)
	if err != nil {
		c.fail("pull_request %s fixture: %v", action, err)
		return
	}
	// GitHub's own state changes first; the delivery follows.
	p.open = action != "closed"
	state := "open"
	if !p.open {
		state = "closed"
	}
	c.h.GH.SetPullRequest(owner, repoName, githubtest.PullRequest{Number: p.number, State: state,
		HeadSHA: p.shas[shaIndex], HeadRef: fmt.Sprintf("feature-%d", p.number)})
	c.deliver(ctx, "pull_request", fmt.Sprintf("pr-%d-%s-%d", p.number, action, shaIndex), body, 3)
}

func (c *chaos) jobBody(j *job, action string) ([]byte, error) {
	return c.h.WorkflowJob(action, ghfixture.Job{ID: j.id, RunID: j.id * 10, Name: fmt.Sprintf("build-%d", j.id),
		Owner: owner, Repo: j.repo, Org: owner, Labels: j.labels})
}

func (c *chaos) jobEvent(ctx context.Context, j *job, action, delivery string) {
	body, err := c.jobBody(j, action)
	if err != nil {
		c.fail("workflow_job fixture: %v", err)
		return
	}
	c.deliver(ctx, "workflow_job", delivery, body, 3)
}

// burst sends c.o.burst distinct deliveries spread over one second: pushes
// that repeat an open PR's current head, edits and label changes Drydock
// ignores, GitHub's retries of queued jobs under new delivery IDs, pings.
func (c *chaos) burst(ctx context.Context) {
	type delivery struct {
		event, id string
		body      []byte
	}
	var ds []delivery
	ping := ghfixture.Ping(owner, repoName, 1)
	for i := 0; len(ds) < c.o.burst; i++ {
		id := fmt.Sprintf("burst-%d", i)
		switch i % 4 {
		case 0, 1:
			p := c.prs[c.intn(len(c.prs))]
			action := []string{"synchronize", "labeled"}[i%2]
			if !p.open || p.group == "closed-later" {
				action = "edited"
			}
			b, err := c.prBody(p, action, len(p.shas)-1)
			if err != nil {
				c.fail("burst fixture: %v", err)
				return
			}
			ds = append(ds, delivery{"pull_request", id, b})
		case 2:
			b, err := c.jobBody(c.jobs[c.intn(len(c.jobs))], "queued")
			if err != nil {
				c.fail("burst fixture: %v", err)
				return
			}
			ds = append(ds, delivery{"workflow_job", id, b})
		case 3:
			ds = append(ds, delivery{"ping", id, ping})
		}
	}
	began := time.Now()
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok := c.deliverOnce(ctx, d.event, d.id, d.body); ok {
				accepted.Add(1)
			}
		}()
		// Spread over one second.
		if next := began.Add(time.Duration(i+1) * time.Second / time.Duration(len(ds))); time.Until(next) > 0 {
			time.Sleep(time.Until(next))
		}
	}
	sent := time.Since(began)
	wg.Wait()
	c.burstAccepted.Store(accepted.Load())
	c.burstElapsed.Store(int64(sent))
	c.log.Info("burst sent", "deliveries", len(ds), "in", sent.Round(time.Millisecond), "all answered after", time.Since(began).Round(time.Millisecond))
}

var errNotYet = errors.New("not yet")

// poll calls check every 250ms until it returns nil or the deadline passes.
func poll(ctx context.Context, deadline time.Time, check func() error) error {
	for {
		err := check()
		if err == nil || !errors.Is(err, errNotYet) {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitPreviews waits until every open PR's preview is ready at its newest
// head and every closed PR's workflow has completed.
func (c *chaos) waitPreviews(ctx context.Context, deadline time.Time) error {
	return poll(ctx, deadline, func() error {
		var pending []string
		for _, p := range c.prs {
			id := workflows.PreviewWorkflowID(owner, repoName, p.number)
			desc, err := c.h.TC.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				pending = append(pending, fmt.Sprintf("#%d: %v", p.number, err))
				continue
			}
			running := desc.GetWorkflowExecutionInfo().GetStatus().String() == "Running"
			if !p.open {
				if running {
					pending = append(pending, fmt.Sprintf("#%d: still running after close", p.number))
				} else if st := desc.GetWorkflowExecutionInfo().GetStatus().String(); st != "Completed" {
					return fmt.Errorf("preview #%d ended %s, want Completed", p.number, st)
				}
				continue
			}
			if !running {
				return fmt.Errorf("preview #%d is open on GitHub but its workflow ended (%s)", p.number, desc.GetWorkflowExecutionInfo().GetStatus())
			}
			st, err := c.h.PreviewStatus(ctx, id, 5*time.Second)
			want := p.shas[len(p.shas)-1]
			switch {
			case err != nil:
				pending = append(pending, fmt.Sprintf("#%d: %v", p.number, err))
			case st.Phase == workflows.PreviewFailed:
				return fmt.Errorf("preview #%d failed: %s", p.number, st.LastError)
			case st.Phase != workflows.PreviewReady || st.DeployedSHA != want:
				pending = append(pending, fmt.Sprintf("#%d: %s at %.7s, want ready at %.7s", p.number, st.Phase, st.DeployedSHA, want))
			}
		}
		if len(pending) > 0 {
			return fmt.Errorf("%w: previews not settled: %s", errNotYet, strings.Join(pending, "; "))
		}
		return nil
	})
}

// checkOpenPreviews fetches every open preview through the router: it must
// answer 200 with the newest head SHA.
func (c *chaos) checkOpenPreviews(ctx context.Context) {
	served := 0
	for _, p := range c.prs {
		if !p.open {
			continue
		}
		want := p.shas[len(p.shas)-1]
		code, body, err := c.h.Get(ctx, owner, repoName, p.number, "/")
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), want) {
			c.fail("preview #%d through the router: HTTP %d, err %v, want the page of %.7s", p.number, code, err, want)
			continue
		}
		served++
	}
	c.count("open previews served at their newest head through the router", served)
}

// waitJobs waits for every RunnerJob workflow and checks GitHub's side:
// every job completed there (cancelled ones as cancelled), and every
// RunnerJob completed, but the ones terminated on purpose.
func (c *chaos) waitJobs(ctx context.Context, deadline time.Time) {
	done := 0
	for _, j := range c.jobs {
		// Once the deadline has passed, every job still gets a short look,
		// so that one stuck job is not reported as many.
		wctx, cancel := context.WithDeadline(ctx, later(deadline, time.Now().Add(5*time.Second)))
		err := c.h.TC.GetWorkflow(wctx, runnerapi.JobWorkflowID(j.id), "").Get(wctx, nil)
		cancel()
		var terminated *temporal.TerminatedError
		switch {
		case err != nil && !(j.fate == fateTerminated && errors.As(err, &terminated)):
			c.fail("job %d (%s): RunnerJob did not complete: %v", j.id, j.fate, err)
			continue
		}
		wantConclusion := ""
		if j.fate == fateCancelQueued || j.fate == fateCancelPickup {
			wantConclusion = "cancelled"
		}
		if err := poll(ctx, deadline, func() error {
			got, ok := c.h.GH.Job(j.id)
			if !ok || got.Status != githubtest.JobCompleted {
				return fmt.Errorf("%w: job %d (%s): GitHub says %q, want completed", errNotYet, j.id, j.fate, got.Status)
			}
			if wantConclusion != "" && got.Conclusion != wantConclusion {
				return fmt.Errorf("job %d (%s): GitHub says %s, want %s", j.id, j.fate, got.Conclusion, wantConclusion)
			}
			return nil
		}); err != nil {
			c.fail("%v", err)
			continue
		}
		done++
	}
	c.count("jobs settled as scripted (RunnerJob and GitHub)", fmt.Sprintf("%d/%d", done, len(c.jobs)))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// waitPoolsDrained waits until both pools' inventories are empty.
func (c *chaos) waitPoolsDrained(ctx context.Context, deadline time.Time) {
	err := poll(ctx, deadline, func() error {
		for _, name := range []string{pool, persistentPool} {
			inv, err := c.inventory(ctx, name)
			if err != nil {
				return fmt.Errorf("%w: pool %s: %v", errNotYet, name, err)
			}
			if len(inv.Machines) > 0 {
				return fmt.Errorf("%w: pool %s still has %d machines", errNotYet, name, len(inv.Machines))
			}
		}
		return nil
	})
	if err != nil {
		c.fail("pools not drained: %v", err)
	}
}

// waitNoMachines waits until the emulator has no machine and no preview.
func (c *chaos) waitNoMachines(ctx context.Context, deadline time.Time) {
	err := poll(ctx, deadline, func() error {
		st := c.h.Emu.Stats()
		if st.LiveMachines > 0 || st.PreviewsLive > 0 {
			return fmt.Errorf("%w: %d machines and %d previews left", errNotYet, st.LiveMachines, st.PreviewsLive)
		}
		return nil
	})
	if err != nil {
		c.fail("after every PR closed and the pool drained: %v", err)
	}
	st := c.h.Emu.Stats()
	c.count("machines left after all PRs closed and the pool drained", st.LiveMachines)
	c.count("previews left", st.PreviewsLive)
}

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
