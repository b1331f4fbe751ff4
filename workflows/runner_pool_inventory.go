package workflows

import (
	"cmp"
	"slices"
	"time"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// The pool's awake accounting (every machine's awake meter, the pool's
// total and its counter) and its inventory (QueryInventory).

// observe folds a machine activity's result into the machine's awake meter.
func (p *poolState) observe(m *poolMachine, ref activities.MachineRef) {
	p.addAwake(observeRef(&m.Awake, ref, p.now))
}

// observeAt folds in one phase seen at a time (zero: now).
func (p *poolState) observeAt(m *poolMachine, phase dedalus.MachinePhase, at time.Time) {
	p.addAwake(observeAt(&m.Awake, phase, at, p.now))
}

// observed is the SignalMachineObserved handler: a job's wake of its
// leased machine. A machine the pool no longer has is ignored.
func (p *poolState) observed(o runnerapi.MachineObserved) {
	for _, m := range p.machines {
		if m.MachineID != "" && m.MachineID == o.MachineID {
			p.observe(m, activities.MachineRef{MachineID: o.MachineID, WasPhase: o.WasPhase,
				WasTransitionAt: o.WasTransitionAt, Phase: o.Phase, TransitionAt: o.TransitionAt})
			return
		}
	}
}

// addAwake adds a closed awake interval to the pool's total and brings
// drydock_pool_awake_seconds_total up to it.
func (p *poolState) addAwake(closed time.Duration) {
	if closed <= 0 {
		return
	}
	p.awakeClosed += closed
	countAwake(p.counter, p.awakeClosed, &p.awakeCounted)
}

// inventory answers QueryInventory, with the awake times as of now (the
// workflow's clock).
func (p *poolState) inventory(now time.Time) runnerapi.Inventory {
	inv := runnerapi.Inventory{
		Pool: p.cfg.Name, MinIdle: p.minIdle, MaxMachines: p.maxMachines,
		Machines: []runnerapi.PoolMachine{}, Queue: []int64{},
		Counts: map[runnerapi.MachineState]int{},
	}
	for _, s := range []runnerapi.MachineState{runnerapi.MachineProvisioning, runnerapi.MachineIdle, runnerapi.MachineWaking,
		runnerapi.MachineBusy, runnerapi.MachineBroken, runnerapi.MachineDraining} {
		inv.Counts[s] = 0
	}
	awake := p.awakeClosed
	for _, m := range p.machines {
		pm := m.PoolMachine
		pm.AwakeSeconds = m.Awake.SoFar(now).Seconds()
		inv.Machines = append(inv.Machines, pm)
		inv.Counts[m.State]++
		awake += m.Awake.SoFar(now) - m.Awake.Total // the open interval
	}
	inv.AwakeSeconds, inv.AwakeAsOf = awake.Seconds(), now
	slices.SortFunc(inv.Machines, func(a, b runnerapi.PoolMachine) int {
		return cmp.Or(cmp.Compare(a.MachineID, b.MachineID), cmp.Compare(a.Provision, b.Provision))
	})
	for _, w := range p.queue {
		inv.Queue = append(inv.Queue, w.req.JobID)
	}
	return inv
}
