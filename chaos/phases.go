package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// run is the whole chaos run: the stack, then the phases, then the checks.
// Broken invariants are recorded (c.broken); the error is for a run that
// could not go on.
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
	if err := c.startStack(ctx, cluster); err != nil {
		return err
	}
	defer c.h.Close()
	killer := c.startKiller(ctx)
	defer killer.stop()

	c.openAll(ctx) // phase 1
	scenarios := c.startScenarios(ctx)
	defer scenarios.stop()
	if err := c.restartTemporal(ctx); err != nil { // phase 2
		return err
	}
	c.log.Info("phase 3: burst", "deliveries", c.o.burst)
	if c.o.cluster {
		c.burstWithAWebhookDown(ctx)
	} else {
		c.burst(ctx)
	}
	if err := c.changePool(ctx); err != nil { // phase 3b
		return err
	}
	if err := c.pushAndClose(ctx); err != nil { // phase 4
		return err
	}
	c.converge(ctx, killer, scenarios) // phase 5
	c.closeAndDrain(ctx)               // phase 6
	c.checkMachines(ctx)
	c.checkOpenWorkflows(ctx)
	c.checkRunnerInvariants(ctx)
	return nil
}

// startStack starts Drydock (on the cluster, when given), scripts the pull
// requests and jobs, and turns the Dedalus faults on.
func (c *chaos) startStack(ctx context.Context, cluster *harness.Cluster) error {
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
	if c.repo, err = harness.NewGitRepo(filepath.Join(c.dir, "src")); err != nil {
		return err
	}
	h.GH.SetFile(owner, repoName, "main", ".drydock/preview.yml", previewSpec)
	if err := c.script(); err != nil {
		return err
	}
	if !c.o.faults {
		return nil
	}
	// Probabilities are tried in the order reset, 503, 429, reset_after:
	// these conditional values give 2.5% resets before processing, 20% 503,
	// 5% 429 and 2.5% resets after processing, of all API calls.
	return h.Emu.SetFaults(emulator.Faults{Routes: map[string]emulator.FaultRule{"*": {
		Reset: 0.025, Error503: 0.2 / 0.975, Error429: 0.05 / (0.975 * 0.8), RetryAfterMS: 200,
		ResetAfter: 0.025 / (0.975 * 0.8 * 0.9359),
	}}})
}

// background is work that runs beside the phases until stopped.
type background struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	after  func() // run once, after the work has stopped
}

func (b *background) goRun(f func()) {
	b.wg.Add(1)
	go func() { defer b.wg.Done(); f() }()
}

// stop cancels the work and waits for it (then runs after, once).
func (b *background) stop() {
	b.cancel()
	b.wg.Wait()
	b.once.Do(func() {
		if b.after != nil {
			b.after()
		}
	})
}

// startKiller SIGKILLs and restarts the worker at random moments; once
// stopped, the worker is left running.
func (c *chaos) startKiller(ctx context.Context) *background {
	kctx, cancel := context.WithCancel(ctx)
	b := &background{cancel: cancel, after: func() {
		if !c.h.Worker.Running() {
			_ = c.h.Worker.Start()
		}
	}}
	if c.o.kills > 0 {
		b.goRun(func() { c.killWorker(kctx) })
	}
	return b
}

// openAll is phase 1: every PR opened and every job queued, each delivery
// three times.
func (c *chaos) openAll(ctx context.Context) {
	c.log.Info("phase 1: open pull requests and queue jobs")
	var wg sync.WaitGroup
	for _, p := range c.prs {
		wg.Add(1)
		go func() { defer wg.Done(); c.openPR(ctx, p) }()
		time.Sleep(30 * time.Millisecond)
	}
	for _, j := range c.jobs {
		wg.Add(1)
		go func() { defer wg.Done(); c.jobEvent(ctx, j, "queued", fmt.Sprintf("queued-%d", j.id)) }()
		time.Sleep(30 * time.Millisecond)
	}
	wg.Wait()
}

// openPR delivers a pull request's first events, as its group scripts.
func (c *chaos) openPR(ctx context.Context, p *pr) {
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
}

// startScenarios runs the runner scenarios (and the cluster's faults)
// beside the rest until the jobs settle.
func (c *chaos) startScenarios(ctx context.Context) *background {
	sctx, cancel := context.WithCancel(ctx)
	b := &background{cancel: cancel}
	deadline := time.Now().Add(c.o.timeout)
	b.goRun(func() { c.cancelJobs(sctx, deadline) })
	b.goRun(func() { c.terminateJobs(sctx, deadline) })
	if c.o.githubFaults {
		b.goRun(func() { c.githubFaults(sctx) })
	}
	if c.o.cluster {
		b.goRun(func() { c.clusterFaults(sctx) })
		b.goRun(func() { c.reconcileWhileLagging(sctx) })
	}
	return b
}

// restartTemporal is phase 2: Temporal restarts while machines are being
// provisioned.
func (c *chaos) restartTemporal(ctx context.Context) error {
	time.Sleep(3 * time.Second)
	if !c.o.restart {
		return nil
	}
	c.log.Info("phase 2: restarting the Temporal dev server")
	began := time.Now()
	if err := c.h.Temporal.Restart(ctx); err != nil {
		return fmt.Errorf("restart Temporal: %w", err)
	}
	c.temporalRestarts.Add(1)
	c.log.Info("Temporal is back", "after", time.Since(began).Round(time.Millisecond))
	return nil
}

// changePool is phase 3b: the pool's configuration changes (the worker
// restarts with it), and its workflow is terminated once.
func (c *chaos) changePool(ctx context.Context) error {
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
	return nil
}

// pushAndClose is phase 4: pushes and closes.
func (c *chaos) pushAndClose(ctx context.Context) error {
	c.log.Info("phase 4: pushes and closes")
	var wg sync.WaitGroup
	defer wg.Wait()
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
	return nil
}

// converge is phase 5: convergence with the faults still on; the kills go
// on while everything settles, until all have been made.
func (c *chaos) converge(ctx context.Context, killer, scenarios *background) {
	c.log.Info("phase 5: waiting for every preview and job to settle")
	if err := c.waitPreviews(ctx, time.Now().Add(c.o.timeout)); err != nil {
		c.fail("%v", err)
	}
	c.waitJobs(ctx, time.Now().Add(c.o.timeout))
	scenarios.stop()
	c.checkLeases(ctx)
	killer.wg.Wait() // every kill made
	killer.stop()
	if err := c.waitPreviews(ctx, time.Now().Add(c.o.timeout)); err != nil {
		c.fail("%v", err)
	}
	c.checkOpenPreviews(ctx)
}

// closeAndDrain is phase 6: every PR closes; the pools drain; the
// reconciler takes what the terminated pool run left; nothing is left.
func (c *chaos) closeAndDrain(ctx context.Context) {
	c.log.Info("phase 6: closing every pull request and draining the pool")
	var wg sync.WaitGroup
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
		if err := c.h.TC.SignalWorkflow(ctx, runnerapi.PoolWorkflowID(name), "", runnerapi.SignalDrain, runnerapi.DrainRequest{}); err != nil {
			c.fail("drain pool %s: %v", name, err)
		}
	}
	_ = c.h.Emu.SetFaults(emulator.Faults{})
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
}
