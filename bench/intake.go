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
	// alternate which side goes first, so that drift on a shared machine
	// (and the dev server's growing database) hurts both sides alike.
	intakeRounds = 2
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
	g := &intakeGen{h: h, pool: pool}

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
	hookRate := (total - float64(c.hookErrs)) / c.hookTime.Seconds()
	rawRate := (total - float64(c.rawErrs)) / c.rawTime.Seconds()
	e.Log.Info("closed loop", "kind", kind, "webhook_per_s", hookRate, "raw_per_s", rawRate, "webhook_errors", c.hookErrs, "raw_errors", c.rawErrs,
		"webhook_cpu", c.hookCPU, "temporal_cpu_webhook_side", c.tempHookCPU, "temporal_cpu_raw_side", c.tempRawCPU,
		"client_cpu_webhook_side", c.selfHookCPU, "client_cpu_raw_side", c.selfRawCPU)
	rows := intakeClosedRows(kind, total, hookRate, rawRate, c)

	if e.Pprof != "" {
		err := e.profile(ctx, g.h.WebhookAdminURL, "profile", 10*time.Second, "intake-"+kind+".pprof", func(ctx context.Context) error {
			_, _, err := g.closedLoop(ctx, kind, true, 100)
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

// intakeClosed is what the closed loop measured of one kind: the time the
// webhook and raw sides took, their failures, and the CPU used by the
// webhook server, the dev server and this process on each side.
type intakeClosed struct {
	hookTime, rawTime, hookCPU, tempHookCPU, tempRawCPU, selfHookCPU, selfRawCPU time.Duration
	hookErrs, rawErrs                                                            int
}

// closedRounds warms both paths up, then runs the closed loop of n
// deliveries and n raw calls in intakeRounds rounds, alternating which side
// goes first.
func (g *intakeGen) closedRounds(ctx context.Context, kind string, n int) (intakeClosed, error) {
	var c intakeClosed
	// Warm up both paths (connections, the dev server's caches).
	if _, _, err := g.closedLoop(ctx, kind, true, 50); err != nil {
		return c, err
	}
	if _, _, err := g.closedLoop(ctx, kind, false, 50); err != nil {
		return c, err
	}
	h := g.h
	for r := range intakeRounds {
		for _, webhook := range []bool{r%2 == 0, r%2 != 0} {
			cpuW, cpuT, cpuS := procCPU(h.Webhook.Pid()), procCPU(h.Temporal.Pid()), procCPU(os.Getpid())
			d, errs, err := g.closedLoop(ctx, kind, webhook, n/intakeRounds)
			if err != nil {
				return c, err
			}
			dW, dT, dS := procCPU(h.Webhook.Pid())-cpuW, procCPU(h.Temporal.Pid())-cpuT, procCPU(os.Getpid())-cpuS
			if webhook {
				c.hookTime, c.hookErrs = c.hookTime+d, c.hookErrs+errs
				c.hookCPU, c.tempHookCPU, c.selfHookCPU = c.hookCPU+dW, c.tempHookCPU+dT, c.selfHookCPU+dS
			} else {
				c.rawTime, c.rawErrs = c.rawTime+d, c.rawErrs+errs
				c.tempRawCPU, c.selfRawCPU = c.tempRawCPU+dT, c.selfRawCPU+dS
			}
		}
	}
	return c, nil
}

// intakeClosedRows are the closed loop's rows of one kind: the rate
// through the webhook against the raw calls', and the CPU per delivery.
func intakeClosedRows(kind string, total, hookRate, rawRate float64, c intakeClosed) []Row {
	call := "SignalWithStartWorkflow"
	if kind == "workflow_job" {
		call = "ExecuteWorkflow"
	}
	hookCPU, tempHookCPU, tempRawCPU, selfRawCPU := c.hookCPU, c.tempHookCPU, c.tempRawCPU, c.selfRawCPU
	return []Row{{
		Metric: fmt.Sprintf("%s deliveries/s through webhook/ (%d in flight, %d deliveries)", kind, intakeConcurrency, int(total)),
		Value:  hookRate, Unit: "/s", Baseline: F(rawRate), Ratio: F(hookRate / rawRate),
		Goal: "≥ 0.95", Met: B(hookRate/rawRate >= 0.95),
		Note: fmt.Sprintf("baseline: Go client %s, same calls", call),
	}, {
		Metric: fmt.Sprintf("%s webhook server CPU per delivery", kind), Value: MS(hookCPU) / total, Unit: "ms",
		Baseline: F(MS(selfRawCPU) / total), Ratio: F(float64(hookCPU) / float64(selfRawCPU)),
		Goal: "≤ 0.3 ms", Met: B(MS(hookCPU)/total <= 0.3),
		Note: "baseline: the Go client's own CPU per raw call (this process)",
	}, {
		Metric: fmt.Sprintf("%s server CPU per delivery (webhook server + dev server)", kind), Value: MS(hookCPU+tempHookCPU) / total, Unit: "ms",
		Baseline: F(MS(tempRawCPU) / total), Ratio: F(float64(hookCPU+tempHookCPU) / float64(tempRawCPU)),
		Note: fmt.Sprintf("webhook server %.2f ms of it; baseline: dev server per raw call", MS(hookCPU)/total),
	}}
}

// openRows runs the open loop of one kind at rate for openFor, through the
// webhook and then raw, and returns its rows: the latencies and the
// failures of all phases.
func (g *intakeGen) openRows(ctx context.Context, e *Env, kind string, rate float64, openFor time.Duration) ([]Row, error) {
	hookLat, hookBad, err := g.openLoop(ctx, kind, true, rate, openFor)
	if err != nil {
		return nil, err
	}
	rawLat, rawBad, err := g.openLoop(ctx, kind, false, rate, openFor)
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
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < first+2 {
		return 0
	}
	a, err1 := strconv.ParseInt(f[first], 10, 64)
	b2, err2 := strconv.ParseInt(f[first+1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(a+b2) * 10 * time.Millisecond
}
