package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
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
		// Warm up both paths (connections, the dev server's caches).
		if _, _, err := g.closedLoop(ctx, kind, true, 50); err != nil {
			return rows, err
		}
		if _, _, err := g.closedLoop(ctx, kind, false, 50); err != nil {
			return rows, err
		}
		var hookTime, rawTime, hookCPU, tempHookCPU, tempRawCPU, selfHookCPU, selfRawCPU time.Duration
		hookErrs, rawErrs := 0, 0
		for r := range intakeRounds {
			for _, webhook := range []bool{r%2 == 0, r%2 != 0} {
				cpuW, cpuT, cpuS := procCPU(h.Webhook.Pid()), procCPU(h.Temporal.Pid()), procCPU(os.Getpid())
				d, errs, err := g.closedLoop(ctx, kind, webhook, n/intakeRounds)
				if err != nil {
					return rows, err
				}
				dW, dT, dS := procCPU(h.Webhook.Pid())-cpuW, procCPU(h.Temporal.Pid())-cpuT, procCPU(os.Getpid())-cpuS
				if webhook {
					hookTime, hookErrs = hookTime+d, hookErrs+errs
					hookCPU, tempHookCPU, selfHookCPU = hookCPU+dW, tempHookCPU+dT, selfHookCPU+dS
				} else {
					rawTime, rawErrs = rawTime+d, rawErrs+errs
					tempRawCPU, selfRawCPU = tempRawCPU+dT, selfRawCPU+dS
				}
			}
		}
		total := float64(n / intakeRounds * intakeRounds)
		hookRate := (total - float64(hookErrs)) / hookTime.Seconds()
		rawRate := (total - float64(rawErrs)) / rawTime.Seconds()
		e.Log.Info("closed loop", "kind", kind, "webhook_per_s", hookRate, "raw_per_s", rawRate, "webhook_errors", hookErrs, "raw_errors", rawErrs,
			"webhook_cpu", hookCPU, "temporal_cpu_webhook_side", tempHookCPU, "temporal_cpu_raw_side", tempRawCPU,
			"client_cpu_webhook_side", selfHookCPU, "client_cpu_raw_side", selfRawCPU)
		call := "SignalWithStartWorkflow"
		if kind == "workflow_job" {
			call = "ExecuteWorkflow"
		}
		rows = append(rows, Row{
			Metric: fmt.Sprintf("%s deliveries/s through webhook/ (%d in flight, %d deliveries)", kind, intakeConcurrency, int(total)),
			Value:  hookRate, Unit: "/s", Baseline: F(rawRate), Ratio: F(hookRate / rawRate),
			Goal: "≥ 0.95", Met: B(hookRate/rawRate >= 0.95),
			Note: fmt.Sprintf("baseline: Go client %s, same calls", call),
		}, Row{
			Metric: fmt.Sprintf("%s webhook server CPU per delivery", kind), Value: MS(hookCPU) / total, Unit: "ms",
			Baseline: F(MS(selfRawCPU) / total), Ratio: F(float64(hookCPU) / float64(selfRawCPU)),
			Goal: "≤ 0.3 ms", Met: B(MS(hookCPU)/total <= 0.3),
			Note: "baseline: the Go client's own CPU per raw call (this process)",
		}, Row{
			Metric: fmt.Sprintf("%s server CPU per delivery (webhook server + dev server)", kind), Value: MS(hookCPU+tempHookCPU) / total, Unit: "ms",
			Baseline: F(MS(tempRawCPU) / total), Ratio: F(float64(hookCPU+tempHookCPU) / float64(tempRawCPU)),
			Note: fmt.Sprintf("webhook server %.2f ms of it; baseline: dev server per raw call", MS(hookCPU)/total),
		})

		if e.Pprof != "" {
			err := e.profile(ctx, h.WebhookAdminURL, "profile", 10*time.Second, "intake-"+kind+".pprof", func(ctx context.Context) error {
				_, _, err := g.closedLoop(ctx, kind, true, 100)
				return err
			})
			if err != nil {
				return rows, err
			}
		}

		// Open loop at half of the webhook's maximum rate.
		rate := hookRate / 2
		hookLat, hookBad, err := g.openLoop(ctx, kind, true, rate, openFor)
		if err != nil {
			return rows, err
		}
		rawLat, rawBad, err := g.openLoop(ctx, kind, false, rate, openFor)
		if err != nil {
			return rows, err
		}
		e.Log.Info("open loop", "kind", kind, "rate", rate, "webhook_p50", hookLat.Quantile(0.5), "webhook_p99", hookLat.Quantile(0.99),
			"raw_p50", rawLat.Quantile(0.5), "raw_p99", rawLat.Quantile(0.99), "webhook_errors", hookBad, "raw_errors", rawBad)
		rows = append(rows,
			Row{Metric: fmt.Sprintf("%s p50 latency at %.0f/s (half the max) for %s", kind, rate, openFor), Value: MS(hookLat.Quantile(0.5)), Unit: "ms",
				Baseline: F(MS(rawLat.Quantile(0.5))), Ratio: F(float64(hookLat.Quantile(0.5)) / float64(rawLat.Quantile(0.5))),
				Note: "request sent → 2xx; baseline: the raw call at the same rate"},
			Row{Metric: fmt.Sprintf("%s p99 latency at %.0f/s", kind, rate), Value: MS(hookLat.Quantile(0.99)), Unit: "ms",
				Baseline: F(MS(rawLat.Quantile(0.99))), Ratio: F(float64(hookLat.Quantile(0.99)) / float64(rawLat.Quantile(0.99)))},
			Row{Metric: fmt.Sprintf("%s non-2xx or failed deliveries (of %d in all phases)", kind, g.sent[kind]), Value: float64(g.failed[kind]),
				Baseline: F(float64(g.rawFailed[kind])), Goal: "0", Met: B(g.failed[kind] == 0)},
		)
	}
	return rows, nil
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

// intakeGen makes deliveries and the equivalent raw Temporal calls, each
// about a pull request or job never seen before (fresh PR numbers, job IDs
// and delivery IDs), so each one is a real new workflow start.
type intakeGen struct {
	h    *harness.Harness
	pool *pools.Pool
	next atomic.Int64

	mu                        sync.Mutex
	sent, failed, rawFailed   map[string]int
	firstFailure, firstRawErr string
}

// delivery is one prepared delivery and the raw call doing the same.
type delivery struct {
	event, id string
	body      []byte
	raw       func(ctx context.Context, tc client.Client) error
}

func (g *intakeGen) count(kind string, webhook, ok bool, why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sent == nil {
		g.sent, g.failed, g.rawFailed = map[string]int{}, map[string]int{}, map[string]int{}
	}
	if webhook {
		g.sent[kind]++
	}
	switch {
	case ok:
	case webhook:
		g.failed[kind]++
		if g.firstFailure == "" {
			g.firstFailure = why
		}
	default:
		g.rawFailed[kind]++
		if g.firstRawErr == "" {
			g.firstRawErr = why
		}
	}
}

// prepare builds n deliveries of kind (outside any timed section).
func (g *intakeGen) prepare(kind string, n int) ([]delivery, error) {
	out := make([]delivery, n)
	for i := range out {
		id := 1_000 + g.next.Add(1)
		var err error
		if kind == "pull_request" {
			out[i], err = g.pullRequest(int(id))
		} else {
			out[i], err = g.workflowJob(id)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (g *intakeGen) pullRequest(number int) (delivery, error) {
	sha := fmt.Sprintf("%040x", 0xbe00000000+number)
	body, err := g.h.PullRequest("opened", ghfixture.PR{
		Owner: intakeOwner, Repo: intakeRepo, Number: number, HeadSHA: sha, HeadRef: "bench",
		CloneURL: "https://github.com/" + intakeOwner + "/" + intakeRepo + ".git",
	})
	if err != nil {
		return delivery{}, err
	}
	d := delivery{event: "pull_request", id: fmt.Sprintf("intake-pr-%d", number), body: body}
	pre, err := intake.DecodePullRequest(body, d.id)
	if err != nil {
		return delivery{}, err
	}
	wid := workflows.PreviewWorkflowID(pre.Owner, pre.Repo, pre.Number)
	opts := client.StartWorkflowOptions{
		ID:        wid,
		TaskQueue: workflows.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrRepo.ValueSet(intake.RepoKey(pre.Owner, pre.Repo)),
			workflows.SearchAttrPRNumber.ValueSet(int64(pre.Number)),
		),
	}
	input := workflows.PreviewInput{Owner: pre.Owner, Repo: pre.Repo, Number: pre.Number}
	d.raw = func(ctx context.Context, tc client.Client) error {
		_, err := tc.SignalWithStartWorkflow(ctx, wid, workflows.SignalPullRequest, pre, opts, workflows.PreviewLifecycleName, input)
		return err
	}
	return d, nil
}

func (g *intakeGen) workflowJob(id int64) (delivery, error) {
	body, err := g.h.WorkflowJob("queued", ghfixture.Job{
		ID: id, RunID: id * 10, Name: fmt.Sprintf("build-%d", id), Owner: intakeOrg, Repo: intakeRepo, Org: intakeOrg, Labels: intakeLabels,
	})
	if err != nil {
		return delivery{}, err
	}
	d := delivery{event: "workflow_job", id: fmt.Sprintf("intake-job-%d", id), body: body}
	job, err := intake.DecodeWorkflowJob(body, d.id)
	if err != nil {
		return delivery{}, err
	}
	// What intake.WorkflowJobs.start sends.
	opts := client.StartWorkflowOptions{
		ID:                                       runnerapi.JobWorkflowID(job.JobID),
		TaskQueue:                                workflows.TaskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrPool.ValueSet(g.pool.Name),
			workflows.SearchAttrJobID.ValueSet(job.JobID),
			workflows.SearchAttrRepo.ValueSet(intake.RepoKey(job.Owner, job.Repo)),
		),
		StaticSummary: fmt.Sprintf("job %q of %s/%s on pool %s", job.Name, job.Owner, job.Repo, g.pool.Name),
	}
	input := runnerapi.RunnerJobInput{Pool: g.pool.Name, Job: job}
	d.raw = func(ctx context.Context, tc client.Client) error {
		_, err := tc.ExecuteWorkflow(ctx, opts, runnerapi.RunnerJobName, input)
		return err
	}
	return d, nil
}

// send makes one delivery through the webhook server (webhook) or the raw
// call, with the intake's own 5 s Temporal timeout, and reports whether it
// was accepted.
func (g *intakeGen) send(ctx context.Context, d delivery, webhook bool) bool {
	if webhook {
		code, err := g.h.Deliver(ctx, d.event, d.id, d.body)
		ok := err == nil && code == http.StatusAccepted
		why := ""
		if !ok {
			why = fmt.Sprintf("HTTP %d %v", code, err)
		}
		g.count(d.event, true, ok, why)
		return ok
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := d.raw(cctx, g.h.TC)
	cancel()
	why := ""
	if err != nil {
		why = err.Error()
	}
	g.count(d.event, false, err == nil, why)
	return err == nil
}

// closedLoop sends n deliveries of kind with intakeConcurrency in flight
// and returns how long they took and how many failed.
func (g *intakeGen) closedLoop(ctx context.Context, kind string, webhook bool, n int) (time.Duration, int, error) {
	ds, err := g.prepare(kind, n)
	if err != nil {
		return 0, 0, err
	}
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for range intakeConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(ds)) {
					return
				}
				if !g.send(ctx, ds[i], webhook) {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if f := int(failed.Load()); f > n/10 {
		return took, f, fmt.Errorf("%s (webhook %v): %d of %d failed; first: %s", kind, webhook, f, n, g.firstError(webhook))
	}
	return took, int(failed.Load()), nil
}

func (g *intakeGen) firstError(webhook bool) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if webhook {
		return g.firstFailure
	}
	return g.firstRawErr
}

// openLoop sends deliveries at a fixed rate for d, whatever the answers
// take (each in its own goroutine), and returns the latencies of the
// accepted ones and the number of failures.
func (g *intakeGen) openLoop(ctx context.Context, kind string, webhook bool, rate float64, d time.Duration) (*harness.Samples, int, error) {
	if rate <= 0 {
		return nil, 0, fmt.Errorf("%s: no rate to run the open loop at", kind)
	}
	n := int(rate * d.Seconds())
	ds, err := g.prepare(kind, n)
	if err != nil {
		return nil, 0, err
	}
	interval := time.Duration(float64(time.Second) / rate)
	var lat harness.Samples
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ds {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			if g.send(ctx, ds[i], webhook) {
				lat.Add(time.Since(began))
			} else {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if lat.Len() == 0 {
		return nil, 0, fmt.Errorf("%s (webhook %v): no delivery accepted; first failure: %s", kind, webhook, g.firstError(webhook))
	}
	return &lat, int(failed.Load()), nil
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
