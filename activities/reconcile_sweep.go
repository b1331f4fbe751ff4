package activities

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// Gauges a reconciliation reports (through the activity's metrics
// handler; every worker reports its latest run: aggregate with max).
const (
	// MetricUnownedMachines is ReconcileResult.Left.
	MetricUnownedMachines = "drydock_unowned_machines"
	// MetricAwakeUnused is, by owner ("pool:<name>" or "unowned"), how
	// long the longest-running machine that nothing uses has been running,
	// as Dedalus reports it: a pool machine no job leases (counted from
	// the later of its wake and its release), or a machine nothing owns
	// (past RECONCILE_GRACE). 0 when there is none. An idle machine should
	// sleep within its autosleep window; one that keeps running costs for
	// nothing.
	MetricAwakeUnused = "drydock_awake_unused_seconds"
	ownerUnowned      = "unowned"
)

// sweep lists every machine: it counts the owned and the young, deletes
// the unowned past the grace period unless some owner could not be read,
// and measures the machines that run unused. listed is false when the
// list broke off; err only when the context ended.
func (r *Reconciler) sweep(ctx context.Context, own *ownership, res *ReconcileResult, log *slog.Logger) (awake *awakeUnused, listed bool, err error) {
	blind := len(own.unknown) > 0
	now := time.Now()
	awake, listed = newAwakeUnused(now, r.Grace, r.poolNames()), true
	for m, err := range r.Dedalus.AllMachines(ctx, 100) {
		if err != nil {
			if ctx.Err() != nil {
				return awake, false, ctx.Err()
			}
			res.Errors = append(res.Errors, fmt.Sprintf("list machines: %v", err))
			listed = false
			break
		}
		heartbeat(ctx, m.MachineID)
		if destroyed(m) {
			continue
		}
		res.Machines++
		switch {
		case own.machines[m.MachineID]:
			res.Owned++
		case own.began.Sub(m.CreatedAt) < r.Grace:
			// Its age counts to the start of the owners' reads.
			res.Young++
		case blind:
			res.Kept++
			res.Left++
		case !r.askPending(ctx, own):
			// A preview visibility showed as pending did not answer:
			// reported once (blind from here on), nothing deleted.
			blind = true
			res.Errors = append(res.Errors, own.unknown...)
			res.Kept++
			res.Left++
		case own.machines[m.MachineID]:
			res.Owned++ // a preview visibility still showed as pending
		default:
			if r.deleteUnowned(ctx, m, res, log) {
				continue // gone: it no longer runs unused
			}
		}
		awake.observe(m, own)
	}
	if res.Kept > 0 {
		res.Errors = append(res.Errors, fmt.Sprintf("ownership unknown: %d unowned machines kept this run", res.Kept))
		log.Warn("reconciler deleted nothing: some owners could not be read", "kept", res.Kept, "unknown", own.unknown)
	}
	return awake, listed, nil
}

// poolNames are the configured pools' names (none without a configuration).
func (r *Reconciler) poolNames() []string {
	if r.Pools == nil {
		return nil
	}
	return r.Pools.Names()
}

// destroyed reports whether a listed machine is destroyed or being destroyed.
func destroyed(m dedalus.MachineListItem) bool {
	return m.Status.Phase == dedalus.PhaseDestroyed || m.Status.Phase == dedalus.PhaseDestroying
}

// deleteUnowned deletes an unowned machine past the grace period and
// records the outcome in res; it reports whether the machine is gone.
func (r *Reconciler) deleteUnowned(ctx context.Context, m dedalus.MachineListItem, res *ReconcileResult, log *slog.Logger) bool {
	_, err := r.Dedalus.DeleteMachine(ctx, m.MachineID, dedalus.Mutation{IdempotencyKey: "drydock:reconcile:delete:" + m.MachineID})
	if err == nil || dedalus.IsNotFound(err) {
		log.Warn("reconciler deleted an unowned machine", "machine", m.MachineID, "created", m.CreatedAt)
		res.DeletedMachines = append(res.DeletedMachines, m.MachineID)
		return true
	}
	res.Errors = append(res.Errors, fmt.Sprintf("delete %s: %v", m.MachineID, err))
	res.Left++
	return false
}

// idleMachine is a pool machine no job leases, from the pool's inventory.
type idleMachine struct {
	pool  string
	since time.Time // when it became idle
}

// noteIdle records the inventory's unleased machines (idle, not running a
// persistent runner's job, not reserved for a returning request).
func (o *ownership) noteIdle(pool string, inv runnerapi.Inventory) {
	for _, m := range inv.Machines {
		if m.MachineID != "" && m.State == runnerapi.MachineIdle && m.RunningJob == 0 && !m.Reserved {
			o.idle[m.MachineID] = idleMachine{pool: pool, since: m.Since}
		}
	}
}

// awakeUnused keeps the longest unused running time per owner over one
// reconciliation's list of machines.
type awakeUnused struct {
	now     time.Time
	grace   time.Duration
	longest map[string]time.Duration
}

func newAwakeUnused(now time.Time, grace time.Duration, pools []string) *awakeUnused {
	a := &awakeUnused{now: now, grace: grace, longest: map[string]time.Duration{ownerUnowned: 0}}
	for _, p := range pools {
		a.longest["pool:"+p] = 0
	}
	return a
}

// observe counts one listed machine if it runs unused.
func (a *awakeUnused) observe(m dedalus.MachineListItem, o *ownership) {
	if m.Status.Phase != dedalus.PhaseRunning {
		return
	}
	from, owner := m.Status.LastTransitionAt, ""
	if from.IsZero() {
		from = m.CreatedAt
	}
	switch im, idle := o.idle[m.MachineID]; {
	case idle:
		owner = "pool:" + im.pool
		if im.since.After(from) {
			from = im.since
		}
	case !o.machines[m.MachineID] && a.now.Sub(m.CreatedAt) >= a.grace:
		owner = ownerUnowned
	default:
		return // in use, or young (being provisioned)
	}
	if d := a.now.Sub(from); d > a.longest[owner] {
		a.longest[owner] = d
	}
}

// report sets the reconciliation's gauges; the awake figures only when
// every machine was listed (a partial list would understate them).
func (a *awakeUnused) report(ctx context.Context, res ReconcileResult, listed bool) {
	if !activity.IsActivity(ctx) {
		return
	}
	h := activity.GetMetricsHandler(ctx)
	h.Gauge(MetricUnownedMachines).Update(float64(res.Left))
	if !listed {
		return
	}
	for owner, d := range a.longest {
		h.WithTags(map[string]string{"owner": owner}).Gauge(MetricAwakeUnused).Update(d.Seconds())
	}
}
