package workflows

import (
	"cmp"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// leaseCheckEvery is how often a pool that holds queue places or leases
// checks that their jobs' workflows still run (runnerPoolVersion on),
// unless its configuration says otherwise (lease_check_every,
// pools.Pool.LeaseCheckInterval). A timer's duration is not part of the
// command sequence: replay is unaffected.
const leaseCheckEvery = pools.DefaultLeaseCheckEvery

// maxWithdrawnKept bounds the recent withdrawals a run remembers.
const maxWithdrawnKept = 256

// poolChans are the pool's signal channels.
type poolChans struct {
	release, resize, drain, prewarm, created, observed workflow.ReceiveChannel
	withdraw, reconfigure, provisioned, started        workflow.ReceiveChannel
}

// loadConfig reads the pool's configuration as the worker has it now.
func (p *pool) loadConfig(ctx workflow.Context) (pools.Pool, bool) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var cfg pools.Pool
	if err := workflow.ExecuteLocalActivity(lctx, runnerActs.PoolConfig, p.cfg.Name).Get(ctx, &cfg); err != nil {
		workflow.GetLogger(ctx).Warn("pool configuration not read; keeping the one this run has", "pool", p.cfg.Name, "error", err)
		return pools.Pool{}, false
	}
	return cfg, true
}

// startConfig sets the run's configuration from the live one, and its
// bounds: a carried resize stands unless the configuration's own bound
// changed since (an edit of RUNNER_POOLS wins).
func (p *pool) startConfig(ctx workflow.Context, in runnerapi.PoolInput) {
	if cfg, ok := p.loadConfig(ctx); ok {
		p.cfg = cfg
	}
	p.cfgMinIdle, p.cfgMaxMachines = p.cfg.MinIdle, p.cfg.MaxMachines
	p.minIdle, p.maxMachines = p.cfg.MinIdle, cmp.Or(p.cfg.MaxMachines, pools.DefaultMaxMachines)
	c := in.Carry
	if c == nil {
		return
	}
	was := func(carried *int, initial int) int {
		if carried != nil {
			return *carried
		}
		return initial // an older run: its configuration was its first input
	}
	if p.cfg.MinIdle == was(c.ConfigMinIdle, in.Pool.MinIdle) {
		p.minIdle = c.MinIdle
	}
	if p.cfg.MaxMachines == was(c.ConfigMaxMachines, in.Pool.MaxMachines) {
		p.maxMachines = c.MaxMachines
	}
}

// reconfigure is the SignalReconfigure handler: the live configuration
// replaces the run's; changed bounds replace resized ones.
func (p *pool) reconfigure(ctx workflow.Context) {
	cfg, ok := p.loadConfig(ctx)
	if !ok {
		return
	}
	r := runnerapi.ResizeRequest{}
	if cfg.MinIdle != p.cfgMinIdle {
		r.MinIdle = ptr(cfg.MinIdle)
	}
	if cfg.MaxMachines != p.cfgMaxMachines {
		r.MaxMachines = ptr(cmp.Or(cfg.MaxMachines, pools.DefaultMaxMachines))
	}
	p.cfg, p.cfgMinIdle, p.cfgMaxMachines = cfg, cfg.MinIdle, cfg.MaxMachines
	workflow.GetLogger(ctx).Info("pool reconfigured", "pool", cfg.Name, "mode", cfg.Mode)
	p.step(ctx, func() { p.resize(r) })
}

func errWithdrawnAcquire(req runnerapi.AcquireRequest) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("acquire of job %d attempt %d was withdrawn", req.JobID, req.Attempt),
		runnerapi.ErrTypeAcquireWithdrawn, nil)
}

// startLeaseCheck asks which holders are gone, and then gives their places
// and leases back (as their withdrawal would) and settles carried
// provisioning slots whose child closed without a report (seen twice).
func (p *pool) startLeaseCheck(ctx workflow.Context) {
	in := p.leaseCheckInput()
	if len(in.Holders)+len(in.Provisions) == 0 {
		return
	}
	p.checking = true
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("check %d lease holders of %s", len(in.Holders)+len(in.Provisions), p.cfg.Name),
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 3},
	})
	f := workflow.ExecuteActivity(actx, runnerActs.CheckLeaseHolders, in)
	workflow.Go(ctx, func(gctx workflow.Context) {
		var res activities.LeaseCheckResult
		err := f.Get(gctx, &res)
		p.checking = false
		defer p.kick()
		if err != nil {
			workflow.GetLogger(gctx).Warn("lease liveness check failed; next time", "error", err)
			return
		}
		if p.canning {
			return // the next run checks again
		}
		p.step(gctx, func() { p.expireGone(res) })
	})
}

// leaseCheckInput lists what the lease liveness check asks about: queued
// requests, leases, carried provisioning children and (persistent mode) the
// jobs runners run.
func (p *poolState) leaseCheckInput() activities.LeaseCheckInput {
	in := activities.LeaseCheckInput{Pool: p.cfg.Name}
	for _, w := range p.queue {
		in.Holders = append(in.Holders, activities.LeaseHolder{JobID: w.req.JobID, Attempt: w.req.Attempt})
	}
	for _, m := range p.machines {
		switch {
		case m.carried && m.State == runnerapi.MachineProvisioning:
			in.Provisions = append(in.Provisions, m.Provision)
		case m.JobID != 0 && !m.deleting && (m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining):
			in.Holders = append(in.Holders, activities.LeaseHolder{JobID: m.JobID, Attempt: m.Attempt, RunnerName: cmp.Or(m.PersistentRunner, m.RunnerName), Repo: m.Repo})
		}
		if p.acct >= 1 && m.RunningJob != 0 && !m.deleting {
			// The job its runner runs (Attempt 0: not a lease).
			in.Holders = append(in.Holders, activities.LeaseHolder{JobID: m.RunningJob, RunnerName: m.PersistentRunner})
		}
	}
	return in
}
