package workflows

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// leaseCheckEvery is how often a pool that holds queue places or leases
// checks that their jobs' workflows still run (runnerPoolVersion on).
const leaseCheckEvery = 5 * time.Minute

// maxWithdrawnKept bounds the recent withdrawals a run remembers.
const maxWithdrawnKept = 256

// poolChans are the pool's signal channels.
type poolChans struct {
	release, resize, drain, prewarm, created, observed workflow.ReceiveChannel
	withdraw, reconfigure, provisioned                 workflow.ReceiveChannel
}

// addV1Receivers adds the signals of runnerPoolVersion 1 to the main loop's selector.
func (p *pool) addV1Receivers(ctx workflow.Context, sel workflow.Selector, ch poolChans) {
	sel.AddReceive(ch.withdraw, func(c workflow.ReceiveChannel, _ bool) {
		var r runnerapi.WithdrawRequest
		c.Receive(ctx, &r)
		p.apply(ctx, runnerapi.PoolSignal{Withdraw: &r})
	})
	sel.AddReceive(ch.provisioned, func(c workflow.ReceiveChannel, _ bool) {
		var r runnerapi.MachineProvisioned
		c.Receive(ctx, &r)
		p.apply(ctx, runnerapi.PoolSignal{Provisioned: &r})
	})
	sel.AddReceive(ch.reconfigure, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		p.reconfigure(ctx)
	})
}

// created is the SignalMachineCreated handler: the pool owns the machine
// of a provisioning slot from its creation.
func (p *pool) created(ctx workflow.Context, mc runnerapi.MachineCreated) {
	for _, m := range p.machines {
		if m.Provision == mc.Provision && m.MachineID == "" {
			m.MachineID = mc.MachineID
			p.observeAt(ctx, m, dedalus.PhaseRunning, mc.RunningAt)
		}
	}
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
	p.resize(ctx, r)
}

// withdraw is the SignalWithdraw handler: the job attempt's queue place
// goes (its waiting acquire fails) and a machine leased to it is returned.
func (p *pool) withdraw(ctx workflow.Context, r runnerapi.WithdrawRequest) {
	match := func(job int64, attempt int) bool {
		return job == r.JobID && (r.Attempt == 0 || attempt == r.Attempt)
	}
	log := workflow.GetLogger(ctx)
	p.withdrawn = append(p.withdrawn, r)
	if len(p.withdrawn) > maxWithdrawnKept {
		p.withdrawn = slices.Delete(p.withdrawn, 0, len(p.withdrawn)-maxWithdrawnKept)
	}
	p.queue = slices.DeleteFunc(p.queue, func(w *waiter) bool {
		if !match(w.req.JobID, w.req.Attempt) {
			return false
		}
		log.Info("acquire request withdrawn", "job", w.req.JobID, "attempt", w.req.Attempt, "reason", r.Reason)
		w.withdrawn = true
		return true
	})
	for _, m := range slices.Clone(p.machines) {
		if (m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining) && !m.deleting && m.JobID != 0 && match(m.JobID, m.Attempt) {
			p.release(ctx, runnerapi.ReleaseRequest{MachineID: m.MachineID, JobID: m.JobID, Attempt: m.Attempt, Reason: "withdrawn: " + r.Reason})
		}
	}
}

// wasWithdrawn reports an acquire for a job attempt withdrawn before.
func (p *pool) wasWithdrawn(req runnerapi.AcquireRequest) bool {
	return slices.ContainsFunc(p.withdrawn, func(r runnerapi.WithdrawRequest) bool {
		return r.JobID == req.JobID && (r.Attempt == 0 || r.Attempt == req.Attempt)
	})
}

func errWithdrawnAcquire(req runnerapi.AcquireRequest) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("acquire of job %d attempt %d was withdrawn", req.JobID, req.Attempt),
		runnerapi.ErrTypeAcquireWithdrawn, nil)
}

// ranOnPersistent reports a completion of another job than m's lease
// holder on m's persistent runner.
func (p *pool) ranOnPersistent(m *poolMachine, r runnerapi.ReleaseRequest) bool {
	return r.MachineID == "" && r.RunnerName != "" && m.PersistentRunner == r.RunnerName && r.JobID != 0 && r.JobID != m.JobID
}

// swapLease: job ran on m's runner, which m's holder leased. The machine
// job leased (whose runner, in persistent mode, runs m's holder's job, or
// will) takes over m's lease; m is then released by the caller.
func (p *pool) swapLease(ctx workflow.Context, m *poolMachine, job int64) {
	for _, o := range p.machines {
		if o == m || o.deleting || o.JobID != job || (o.State != runnerapi.MachineBusy && o.State != runnerapi.MachineDraining) {
			continue
		}
		workflow.GetLogger(ctx).Info("job ran on another job's machine: leases swapped", "job", job, "ran_on", m.MachineID,
			"its_lease", o.MachineID, "now_leased_to", m.JobID)
		o.JobID, o.Attempt, o.RunnerName, o.Reserved = m.JobID, m.Attempt, m.RunnerName, m.Reserved
		return
	}
}

// holdsForOthers: a queue place, a lease or a carried provisioning slot
// depends on a workflow outside this run.
func (p *pool) holdsForOthers() bool {
	return len(p.queue) > 0 || slices.ContainsFunc(p.machines, func(m *poolMachine) bool {
		return m.carried || (m.JobID != 0 && (m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining))
	})
}

// startLeaseCheck asks which holders are gone, and then gives their places
// and leases back (as their withdrawal would) and settles carried
// provisioning slots whose child closed without a report (seen twice).
func (p *pool) startLeaseCheck(ctx workflow.Context) {
	in := activities.LeaseCheckInput{Pool: p.cfg.Name}
	for _, w := range p.queue {
		in.Holders = append(in.Holders, activities.LeaseHolder{JobID: w.req.JobID, Attempt: w.req.Attempt})
	}
	for _, m := range p.machines {
		switch {
		case m.carried && m.State == runnerapi.MachineProvisioning:
			in.Provisions = append(in.Provisions, m.Provision)
		case m.JobID != 0 && !m.deleting && (m.State == runnerapi.MachineBusy || m.State == runnerapi.MachineDraining):
			in.Holders = append(in.Holders, activities.LeaseHolder{JobID: m.JobID, Attempt: m.Attempt, RunnerName: cmp.Or(m.PersistentRunner, m.RunnerName)})
		}
	}
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
		p.expireGone(gctx, res)
	})
}

// expireGone gives back what gone holders held.
func (p *pool) expireGone(ctx workflow.Context, res activities.LeaseCheckResult) {
	log := workflow.GetLogger(ctx)
	for _, h := range res.Gone {
		log.Warn("lease holder is gone: its place or lease expires", "job", h.JobID, "attempt", h.Attempt)
		p.withdraw(ctx, runnerapi.WithdrawRequest{JobID: h.JobID, Attempt: h.Attempt, Reason: "job workflow no longer running"})
	}
	var seen []string
	for _, id := range res.ProvisionsClosed {
		i := slices.IndexFunc(p.machines, func(m *poolMachine) bool {
			return m.carried && m.Provision == id && m.State == runnerapi.MachineProvisioning
		})
		if i < 0 {
			continue
		}
		if !slices.Contains(p.closedOnce, id) {
			seen = append(seen, id)
			continue
		}
		m := p.machines[i]
		log.Warn("provisioning child closed without reporting: slot given up", "child", id, "machine", m.MachineID)
		if m.MachineID != "" {
			// It may have made a machine nobody was told about.
			m.State = runnerapi.MachineBroken
			p.startDelete(ctx, m, "provisioning child closed without reporting")
			continue
		}
		p.provisionDone(ctx, m, "", fmt.Errorf("provisioning child %s closed without reporting", id), false)
	}
	p.closedOnce = seen
}
