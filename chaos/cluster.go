package main

// The cluster run (-cluster, make test-cluster): the same chaos on a
// production-shaped Temporal (scripts/cluster.sh: PostgreSQL, 4 history
// shards, frontend/history/matching/worker as separate processes) with two
// workers, two webhook servers and two routers, plus the faults only a
// cluster has and the invariants they threaten:
//   - one worker, one webhook replica and one router are killed mid-run
//     (and come back later); the history service is restarted (every shard
//     moves) and PostgreSQL is restarted;
//   - the reconciler runs while previews provision and Temporal restarts,
//     when visibility lags the workflows most: it must not delete a machine
//     a workflow owns (one machine per pull request, no machine lost);
//   - GitHub's three copies of each delivery are spread over both webhook
//     replicas (the harness alternates): one workflow per pull request;
//   - a cold burst split across both routers makes exactly one wake.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows"
)

// startCluster is the run's cluster: the one $DRYDOCK_CLUSTER_DIR names,
// or a new one in the scratch directory (stopped by the returned func).
func (c *chaos) startCluster(ctx context.Context) (*harness.Cluster, func(), error) {
	if dir := os.Getenv(harness.ClusterDirEnv); dir != "" {
		cl, err := harness.AttachCluster(dir)
		return cl, func() {}, err
	}
	began := time.Now()
	log, err := os.Create(filepath.Join(c.dir, "cluster.log"))
	if err != nil {
		return nil, nil, err
	}
	// PostgreSQL runs as the postgres user: its data directory's parents
	// must be searchable by it (the scratch directory is private).
	cdir := filepath.Join(c.dir, "cluster")
	if err := os.Chmod(c.dir, 0o711); err != nil {
		return nil, nil, err
	}
	cl, err := harness.StartCluster(ctx, cdir, log)
	if err != nil {
		log.Close()
		return nil, nil, err
	}
	c.log.Info("cluster started", "address", cl.Address(), "after", time.Since(began).Round(time.Millisecond))
	return cl, func() { _ = cl.Stop(); log.Close() }, nil
}

// clusterFaults breaks one thing after another while the previews and jobs
// run; each replica killed comes back after a while, as a pod is replaced.
func (c *chaos) clusterFaults(ctx context.Context) {
	cl := c.h.Temporal.Cluster()
	down := func(p *harness.Proc) func(context.Context) error {
		return func(ctx context.Context) error {
			p.Kill()
			select {
			case <-ctx.Done():
			case <-time.After(c.jitter(8 * time.Second)):
			}
			// The worker may have been started already (a reconfiguration
			// restarts every replica).
			if err := p.Start(); err != nil && !p.Running() {
				return err
			}
			return nil
		}
	}
	steps := []struct {
		name string
		do   func(context.Context) error
	}{
		// Webhook replica 2 is killed for the burst (burstWithAWebhookDown).
		{"killed worker 2 (down for ~8 s)", down(c.h.Workers[1])},
		{"restarted the history service", func(ctx context.Context) error { return cl.Restart(ctx, "history") }},
		{"restarted PostgreSQL", func(ctx context.Context) error { return cl.Restart(ctx, "postgres") }},
		{"crashed the matching service", func(ctx context.Context) error { return cl.Kill(ctx, "matching") }},
		// The router replica is killed in the middle of the cold burst.
	}
	for i, s := range steps {
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.jitter(time.Duration(1+3*min(i, 1)) * time.Second)):
		}
		began := time.Now()
		if err := s.do(ctx); err != nil {
			c.fail("cluster fault %q: %v", s.name, err)
			continue
		}
		c.log.Info("cluster fault", "what", s.name, "took", time.Since(began).Round(time.Millisecond))
		c.clusterDone1(s.name)
	}
}

func (c *chaos) clusterDone1(name string) {
	c.clusterMu.Lock()
	c.clusterDone = append(c.clusterDone, name)
	c.clusterMu.Unlock()
}

// burstWithAWebhookDown is phase 3 on a cluster: webhook replica 2 is
// killed as the burst starts, so that half of its first attempts find no
// one listening and are redelivered (to the other replica, in turn), and
// comes back a few seconds later.
func (c *chaos) burstWithAWebhookDown(ctx context.Context) {
	c.h.Webhooks[1].Kill()
	c.burst(ctx)
	time.Sleep(c.jitter(4 * time.Second))
	if err := c.h.Webhooks[1].Start(); err != nil {
		c.fail("restart webhook replica 2: %v", err)
		return
	}
	c.clusterDone1("killed webhook replica 2 for the burst (back a few seconds after)")
}

// reconcileWhileLagging runs the reconciler now and then while previews
// provision (RECONCILE_GRACE is 1 s: every machine is old enough), so that
// it lists owners while visibility trails the workflows. What it deletes is
// checked at the end: a machine a workflow owned shows as a second machine
// of a pull request, or a preview that never became ready.
func (c *chaos) reconcileWhileLagging(ctx context.Context) {
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.jitter(5 * time.Second)):
		}
		run, err := c.h.TC.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: fmt.Sprintf("chaos-reconcile-lagging-%d", i), TaskQueue: workflows.TaskQueue}, workflows.ReconcileName)
		if err != nil {
			continue // Temporal restarting: the next round tries again
		}
		var res activities.ReconcileResult
		if err := run.Get(ctx, &res); err != nil {
			if ctx.Err() != nil {
				// The scenarios stopped while this run was going: let it
				// finish, so the scenario leaves no workflow open (seen:
				// "workflows still open at the end: Reconcile ...").
				wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				_ = run.Get(wctx, &res)
				cancel()
				return
			}
			continue
		}
		c.lagRuns.Add(1)
		c.lagDeleted.Add(int64(len(res.DeletedMachines)))
	}
}

// coldBurst opens one more preview with a 2 s autosleep, waits until its
// machine sleeps, sends n requests at once alternately through both
// routers, kills router 2 in the middle of it (the harness, as a load
// balancer, sends what router 2 cannot answer to router 1), and checks that
// Dedalus saw exactly one wake and every request was answered; then closes
// the preview.
func (c *chaos) coldBurst(ctx context.Context, n int) {
	const repo, number = "wake", 1
	h := c.h
	h.GH.SetFile(owner, repo, "main", ".drydock/preview.yml", wakeSpec)
	sha := c.prs[0].shas[0]
	pr := ghfixture.PR{Owner: owner, Repo: repo, Number: number, HeadSHA: sha, HeadRef: "wake", CloneURL: c.repo.Dir}
	event := func(action string) {
		state := map[bool]string{true: "open", false: "closed"}[action != "closed"]
		h.GH.SetPullRequest(owner, repo, githubtest.PullRequest{Number: number, State: state, HeadSHA: sha, HeadRef: "wake"})
		body, err := h.PullRequest(action, pr)
		if err != nil {
			c.fail("cold burst fixture: %v", err)
			return
		}
		c.deliver(ctx, "pull_request", "wake-"+action, body, 3)
	}
	event("opened")
	defer event("closed")
	id := workflows.PreviewWorkflowID(owner, repo, number)
	if err := c.waitAsleep(ctx, id); err != nil {
		c.fail("cold burst: %v", err)
		return
	}
	time.Sleep(1500 * time.Millisecond) // past the routers' awake TTL: both must ask
	before := h.Emu.Stats().WakeRequests
	failed := c.burstKillingRouter2(ctx, repo, number, n)
	wakes := h.Emu.Stats().WakeRequests - before
	if err := c.h.Routers[1].Start(); err != nil {
		c.fail("restart router 2: %v", err)
	}
	c.count(fmt.Sprintf("cold burst of %d requests split across both routers: wake calls to Dedalus, failed requests", n),
		fmt.Sprintf("%d, %d", wakes, failed))
	if wakes != 1 || failed != 0 {
		c.fail("cold burst across both routers: %d wake calls (want 1), %d of %d requests failed", wakes, failed, n)
	}
}

// waitAsleep waits until preview id is ready and its machine sleeps.
func (c *chaos) waitAsleep(ctx context.Context, id string) error {
	return poll(ctx, time.Now().Add(c.o.timeout), func() error {
		st, err := c.h.PreviewStatus(ctx, id, 5*time.Second)
		if err != nil || st.Phase != workflows.PreviewReady {
			return fmt.Errorf("%w: preview %s not ready (%s, %v)", errNotYet, id, st.Phase, err)
		}
		return c.machineIs(st.MachineID, "sleeping")
	})
}

// burstKillingRouter2 sends n requests at once to the preview through the
// routers and kills router 2 at a random moment in the first 200 ms of
// it; it returns how many requests failed.
func (c *chaos) burstKillingRouter2(ctx context.Context, repo string, number, n int) int64 {
	var failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Duration(c.intn(200)) * time.Millisecond)
		c.h.Routers[1].Kill()
		c.clusterDone1("killed router replica 2 in the middle of the cold burst")
	}()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, err := c.h.Get(ctx, owner, repo, number, "/")
			if err != nil || code != http.StatusOK {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	return failed.Load()
}

func (c *chaos) machineIs(id, phase string) error {
	for _, m := range c.h.Emu.Stats().Machines {
		if m.MachineID == id && strings.EqualFold(string(m.Phase), phase) {
			return nil
		}
	}
	return fmt.Errorf("%w: machine %q not %s", errNotYet, id, phase)
}

const wakeSpec = `
machine: {vcpu: 1, memory_mib: 512, storage_gib: 2, autosleep: 2s}
app: {port: 3000, health_path: /healthz, health_timeout: 60s}
start: {command: [python3, examples/previewapp/app.py]}
`

// clusterCounts are the cluster run's lines of the report.
func (c *chaos) clusterCounts() {
	c.clusterMu.Lock()
	defer c.clusterMu.Unlock()
	c.count("cluster: Temporal address (4 history shards, services as separate processes)", c.h.Temporal.Address()+" namespace "+c.h.Temporal.Namespace())
	c.count("cluster faults made", fmt.Sprintf("%d: %v", len(c.clusterDone), c.clusterDone))
	c.count("reconciler runs while previews provisioned (machines they deleted)", fmt.Sprintf("%d (%d)", c.lagRuns.Load(), c.lagDeleted.Load()))
	accepted := c.h.AcceptedByReplica()
	c.count("deliveries accepted by webhook replica 1 / 2", fmt.Sprintf("%d / %d", accepted[0], accepted[1]))
	if accepted[0] == 0 || accepted[1] == 0 {
		c.fail("deliveries were not spread over both webhook replicas: %v", accepted)
	}
}
