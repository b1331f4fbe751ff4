package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/harness"
)

const (
	// intakeConcurrency is the number of deliveries (or raw client calls)
	// in flight in the closed-loop phases.
	intakeConcurrency = 32
	// intakeRounds splits each closed-loop measurement into rounds that
	// take turns at which side goes first (closedRounds). Six: each of the
	// three sides goes first twice, and a minute of drift on this shared
	// machine falls on every side.
	intakeRounds = 6
	intakeOwner  = "bench"
	intakeRepo   = "intake"
	intakeOrg    = "bench-org"
	intakePool   = "bench"
)

var intakeLabels = []string{"self-hosted", "linux", "bench"}

func init() {
	register(Scenario{Order: 1, Name: "intake", Title: "1. Webhook intake", Run: intakeBench})
}

// intakeBench measures how many signed pull_request and workflow_job
// deliveries per second the webhook server turns into workflow starts, next
// to the rate of a Go client making the very same Temporal calls against the
// same dev server, and the delivery latency at half of that maximum rate.
// The worker is not running: only the intake and Temporal are measured.
func intakeBench(ctx context.Context, e *Env) ([]Row, error) {
	poolsJSON, err := intakePoolsJSON()
	if err != nil {
		return nil, err
	}
	opts := harness.Options{
		NoWorker: true,
		Pools:    func(*harness.Harness) (string, error) { return poolsJSON, nil },
	}
	if e.Pprof != "" {
		opts.WebhookEnv = []string{"WEBHOOK_PPROF=true"}
	}
	h, err := e.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	pc, err := pools.LoadFrom("", poolsJSON)
	if err != nil {
		return nil, err
	}
	pool := pc.Match(intakeLabels)
	if pool == nil {
		return nil, errors.New("intake: the bench pool does not take the bench labels")
	}
	bare, err := dialBare(h.Temporal.Address(), h.Temporal.Namespace())
	if err != nil {
		return nil, err
	}
	defer bare.Close()
	relay, err := startRelay(h.TC, h.HTTPClient())
	if err != nil {
		return nil, err
	}
	defer relay.close()
	g := &intakeGen{h: h, bare: bare, relay: relay, pool: pool}

	n := max(200, e.N(3000))
	openFor := time.Duration(max(3, e.N(10))) * time.Second
	var rows []Row
	for _, kind := range []string{"pull_request", "workflow_job"} {
		r, err := g.measureKind(ctx, e, kind, n, openFor)
		rows = append(rows, r...)
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// measureKind measures one kind of delivery: the closed loop (n
// deliveries, and as many raw calls), a CPU profile of it with -pprof, and
// the open loop at half the webhook's maximum rate for openFor. On an
// error it returns the rows measured so far.
func (g *intakeGen) measureKind(ctx context.Context, e *Env, kind string, n int, openFor time.Duration) ([]Row, error) {
	c, err := g.closedRounds(ctx, kind, n)
	if err != nil {
		return nil, err
	}
	total := float64(n / intakeRounds * intakeRounds)
	hookRate := c.rate(sideWebhook, total)
	e.Log.Info("closed loop", "kind", kind, "webhook_per_s", hookRate, "raw_per_s", c.rate(sideRaw, total), "bare_per_s", c.rate(sideBare, total), "relay_per_s", c.rate(sideRelay, total),
		"errors", c.errs, "webhook_cpu", c.hookCPU[sideWebhook], "temporal_cpu", c.tempCPU, "client_cpu", c.selfCPU)
	rows := intakeClosedRows(kind, total, c)

	if e.Pprof != "" {
		err := e.profile(ctx, g.h.WebhookAdminURL, "profile", 10*time.Second, "intake-"+kind+".pprof", func(ctx context.Context) error {
			_, _, err := g.closedLoop(ctx, kind, sideWebhook, 100)
			return err
		})
		if err != nil {
			return rows, err
		}
	}

	// Open loop at half of the webhook's maximum rate.
	open, err := g.openRows(ctx, e, kind, hookRate/2, openFor)
	return append(rows, open...), err
}

// intakeClosed is what the closed loop measured of one kind, per side
// (indexed by intakeSide): the time it took, its failures, and the CPU
// used meanwhile by the webhook server, the dev server and this process.
type intakeClosed struct {
	time, hookCPU, tempCPU, selfCPU [4]time.Duration
	errs                            [4]int
}

// rate is side's deliveries (or calls) per second over total.
func (c intakeClosed) rate(side intakeSide, total float64) float64 {
	return (total - float64(c.errs[side])) / c.time[side].Seconds()
}

// closedRounds warms every side up, then runs the closed loop of n
// deliveries, n raw calls, n bare calls and n relayed deliveries in intakeRounds rounds, each
// round starting with the next side, so that drift on a shared machine
// (and the dev server's growing database) hurts all sides alike.
func (g *intakeGen) closedRounds(ctx context.Context, kind string, n int) (intakeClosed, error) {
	var c intakeClosed
	sides := []intakeSide{sideWebhook, sideRaw, sideBare, sideRelay}
	// Warm up (connections, the dev server's caches).
	for _, side := range sides {
		if _, _, err := g.closedLoop(ctx, kind, side, 50); err != nil {
			return c, err
		}
	}
	h := g.h
	for r := range intakeRounds {
		for k := range sides {
			side := sides[(r+k)%len(sides)]
			cpuW, cpuT, cpuS := procCPU(h.Webhook.Pid()), procCPU(h.Temporal.Pid()), procCPU(os.Getpid())
			d, errs, err := g.closedLoop(ctx, kind, side, n/intakeRounds)
			if err != nil {
				return c, err
			}
			c.time[side] += d
			c.errs[side] += errs
			c.hookCPU[side] += procCPU(h.Webhook.Pid()) - cpuW
			c.tempCPU[side] += procCPU(h.Temporal.Pid()) - cpuT
			c.selfCPU[side] += procCPU(os.Getpid()) - cpuS
		}
	}
	return c, nil
}

// intakeClosedRows are the closed loop's rows of one kind: the rate
// through the webhook against the raw calls', and the CPU per delivery
// against the raw call's and the bare gRPC call's.
func intakeClosedRows(kind string, total float64, c intakeClosed) []Row {
	call := "SignalWithStartWorkflow"
	if kind == "workflow_job" {
		call = "ExecuteWorkflow"
	}
	hookRate, rawRate, relayRate := c.rate(sideWebhook, total), c.rate(sideRaw, total), c.rate(sideRelay, total)
	hookCPU, rawCPU, bareCPU := c.hookCPU[sideWebhook], c.selfCPU[sideRaw], c.selfCPU[sideBare]
	return []Row{{
		Metric: fmt.Sprintf("%s deliveries/s through webhook/ (%d in flight, %d deliveries)", kind, intakeConcurrency, int(total)),
		Value:  hookRate, Unit: "/s", Baseline: F(rawRate), Ratio: F(hookRate / rawRate),
		Goal: "≥ 0.95", Met: B(hookRate/rawRate >= 0.95),
		Note: fmt.Sprintf("baseline: Go client %s, same calls; %d rounds taking turns", call, intakeRounds),
	}, {
		Metric: fmt.Sprintf("%s floor: deliveries/s through a bare HTTP hop", kind), Value: relayRate, Unit: "/s",
		Baseline: F(rawRate), Ratio: F(relayRate / rawRate),
		Note: fmt.Sprintf("an HTTP server in this process that reads each delivery and makes its raw call, nothing else (no signature check, no decoding); "+
			"baseline: the raw call's; the webhook's rate against this floor: %.2f", hookRate/relayRate),
	}, {
		Metric: fmt.Sprintf("%s webhook server CPU per delivery", kind), Value: MS(hookCPU) / total, Unit: "ms",
		Baseline: F(MS(rawCPU) / total), Ratio: F(float64(hookCPU) / float64(rawCPU)),
		Goal: "≤ 0.3 ms", Met: B(MS(hookCPU)/total <= 0.3),
		Note: "baseline: the Go client's own CPU per raw call (this process)",
	}, {
		Metric: fmt.Sprintf("%s floor: CPU per call of the same start as a bare gRPC request", kind), Value: MS(bareCPU) / total, Unit: "ms",
		Baseline: F(MS(rawCPU) / total), Ratio: F(float64(bareCPU) / float64(rawCPU)),
		Note: fmt.Sprintf("the generated WorkflowServiceClient, no SDK client, no compression, this process; %.0f calls/s; baseline: the raw call's", c.rate(sideBare, total)),
	}, {
		Metric: fmt.Sprintf("%s server CPU per delivery (webhook server + dev server)", kind), Value: MS(hookCPU+c.tempCPU[sideWebhook]) / total, Unit: "ms",
		Baseline: F(MS(c.tempCPU[sideRaw]) / total), Ratio: F(float64(hookCPU+c.tempCPU[sideWebhook]) / float64(c.tempCPU[sideRaw])),
		Note: fmt.Sprintf("webhook server %.2f ms of it; baseline: dev server per raw call", MS(hookCPU)/total),
	}}
}

// openRows runs the open loop of one kind at rate for openFor, through the
// webhook and then raw, and returns its rows: the latencies and the
// failures of all phases.
func (g *intakeGen) openRows(ctx context.Context, e *Env, kind string, rate float64, openFor time.Duration) ([]Row, error) {
	hookLat, hookBad, err := g.openLoop(ctx, kind, sideWebhook, rate, openFor)
	if err != nil {
		return nil, err
	}
	rawLat, rawBad, err := g.openLoop(ctx, kind, sideRaw, rate, openFor)
	if err != nil {
		return nil, err
	}
	e.Log.Info("open loop", "kind", kind, "rate", rate, "webhook_p50", hookLat.Quantile(0.5), "webhook_p99", hookLat.Quantile(0.99),
		"raw_p50", rawLat.Quantile(0.5), "raw_p99", rawLat.Quantile(0.99), "webhook_errors", hookBad, "raw_errors", rawBad)
	return []Row{
		{Metric: fmt.Sprintf("%s p50 latency at %.0f/s (half the max) for %s", kind, rate, openFor), Value: MS(hookLat.Quantile(0.5)), Unit: "ms",
			Baseline: F(MS(rawLat.Quantile(0.5))), Ratio: F(float64(hookLat.Quantile(0.5)) / float64(rawLat.Quantile(0.5))),
			Note: "request sent → 2xx; baseline: the raw call at the same rate"},
		{Metric: fmt.Sprintf("%s p99 latency at %.0f/s", kind, rate), Value: MS(hookLat.Quantile(0.99)), Unit: "ms",
			Baseline: F(MS(rawLat.Quantile(0.99))), Ratio: F(float64(hookLat.Quantile(0.99)) / float64(rawLat.Quantile(0.99)))},
		{Metric: fmt.Sprintf("%s non-2xx or failed deliveries (of %d in all phases)", kind, g.sent[kind]), Value: float64(g.failed[kind]),
			Baseline: F(float64(g.rawFailed[kind])), Goal: "0", Met: B(g.failed[kind] == 0)},
	}, nil
}

// intakePoolsJSON is RUNNER_POOLS: one pool taking the bench labels.
func intakePoolsJSON() (string, error) {
	b, err := json.Marshal(map[string]any{"pools": []any{map[string]any{
		"name": intakePool, "labels": intakeLabels, "scope": map[string]any{"kind": "org", "org": intakeOrg},
		"repositories": []string{intakeOrg + "/" + intakeRepo}, "runner_group_id": 2,
		"machine":      map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 2, "autosleep": "10m"},
		"max_machines": 5,
	}}})
	return string(b), err
}

// procCPU is the user+system CPU time a process has used so far (0 when
// it cannot be read).
func procCPU(pid int) time.Duration { return statTicks(fmt.Sprint(pid), 11) }

// statTicks sums the two clock-tick fields of /proc/<pid>/stat starting at
// index first after the command (11: utime and stime; 13: cutime and
// cstime), as a duration: ticks are 1/100 s on Linux. 0 when unreadable.
func statTicks(pid string, first int) time.Duration {
	return ticksAt(statFields(pid), first)
}

// statFields are the fields of /proc/<pid>/stat after the command (nil when
// unreadable).
func statFields(pid string) []string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// ticksAt sums fields first and first+1 of statFields as clock ticks (0
// when missing).
func ticksAt(f []string, first int) time.Duration {
	if len(f) < first+2 {
		return 0
	}
	a, err1 := strconv.ParseInt(f[first], 10, 64)
	b, err2 := strconv.ParseInt(f[first+1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(a+b) * 10 * time.Millisecond
}
