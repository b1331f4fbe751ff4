package main

import (
	"context"
	"fmt"
	"net/http"
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

// intakeGen makes deliveries and the equivalent raw Temporal calls, each
// about a pull request or job never seen before (fresh PR numbers, job IDs
// and delivery IDs), so each one is a real new workflow start.
type intakeGen struct {
	h     *harness.Harness
	bare  *bareClient
	relay *intakeRelay
	pool  *pools.Pool
	next  atomic.Int64

	mu                        sync.Mutex
	sent, failed, rawFailed   map[string]int
	firstFailure, firstRawErr string
}

// delivery is one prepared delivery and the raw call doing the same.
type delivery struct {
	event, id, sig string // sig: its X-Hub-Signature-256, computed when prepared
	body           []byte
	raw            func(ctx context.Context, tc client.Client) error
	bare           bareStart // the same start as a bare gRPC request
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
		out[i].sig = intake.SignatureHeader([]byte(harness.Secret), out[i].body)
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
	d.bare = bareStart{id: wid, workflowType: workflows.PreviewLifecycleName, taskQueue: workflows.TaskQueue, input: []any{input},
		signal: workflows.SignalPullRequest, signalArg: pre, attrs: map[string]bareAttr{
			workflows.SearchAttrRepo.GetName():     {intake.RepoKey(pre.Owner, pre.Repo), "Keyword"},
			workflows.SearchAttrPRNumber.GetName(): {int64(pre.Number), "Int"},
		}}
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
	d.bare = bareStart{id: opts.ID, workflowType: runnerapi.RunnerJobName, taskQueue: workflows.TaskQueue, input: []any{input},
		reuse: opts.WorkflowIDReusePolicy, conflict: opts.WorkflowIDConflictPolicy, summary: opts.StaticSummary,
		attrs: map[string]bareAttr{
			workflows.SearchAttrPool.GetName():  {g.pool.Name, "Keyword"},
			workflows.SearchAttrJobID.GetName(): {job.JobID, "Int"},
			workflows.SearchAttrRepo.GetName():  {intake.RepoKey(job.Owner, job.Repo), "Keyword"},
		}}
	return d, nil
}

// intakeSide is what a delivery goes through: the webhook server, the SDK
// client's same call (the raw baseline), the same start as a bare gRPC
// request (the CPU's floor), or the raw call behind a bare HTTP hop (the
// rate's floor, intake_relay.go).
type intakeSide int

const (
	sideWebhook intakeSide = iota
	sideRaw
	sideBare
	sideRelay
)

func (s intakeSide) String() string {
	return [...]string{"webhook", "raw", "bare gRPC", "HTTP relay"}[s]
}

// send makes one delivery through side, with the intake's own 5 s
// Temporal timeout for the calls, and reports whether it was accepted.
func (g *intakeGen) send(ctx context.Context, d delivery, side intakeSide) bool {
	if side == sideWebhook || side == sideRelay {
		var code int
		var err error
		if side == sideWebhook {
			code, err = g.h.DeliverSigned(ctx, d.event, d.id, d.body, d.sig)
		} else {
			code, err = g.relay.deliver(ctx, d)
		}
		ok := err == nil && code == http.StatusAccepted
		why := ""
		if !ok {
			why = fmt.Sprintf("%s: HTTP %d %v", side, code, err)
		}
		g.count(d.event, side == sideWebhook, ok, why)
		return ok
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	var err error
	if side == sideBare {
		err = g.bare.call(cctx, d.bare)
	} else {
		err = d.raw(cctx, g.h.TC)
	}
	cancel()
	why := ""
	if err != nil {
		why = side.String() + ": " + err.Error()
	}
	g.count(d.event, false, err == nil, why)
	return err == nil
}

// closedLoop sends n deliveries of kind with intakeConcurrency in flight
// and returns how long they took and how many failed.
func (g *intakeGen) closedLoop(ctx context.Context, kind string, side intakeSide, n int) (time.Duration, int, error) {
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
				if !g.send(ctx, ds[i], side) {
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
		return took, f, fmt.Errorf("%s (%s): %d of %d failed; first: %s", kind, side, f, n, g.firstError(side == sideWebhook))
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
func (g *intakeGen) openLoop(ctx context.Context, kind string, side intakeSide, rate float64, d time.Duration) (*harness.Samples, int, error) {
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
			if g.send(ctx, ds[i], side) {
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
		return nil, 0, fmt.Errorf("%s (%s): no delivery accepted; first failure: %s", kind, side, g.firstError(side == sideWebhook))
	}
	return &lat, int(failed.Load()), nil
}
