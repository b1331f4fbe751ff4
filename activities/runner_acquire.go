package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// AcquireInput asks pool Pool for a machine for one job attempt.
type AcquireInput struct {
	Pool    string
	Request runnerapi.AcquireRequest
}

// AcquireRunner leases a machine from the pool: it sends the pool's acquire
// Update (update ID runnerapi.AcquireUpdateID(job, attempt), so a retried
// activity re-attaches to the same request) with update-with-start, which
// starts the pool's workflow if it is not running, and waits until the pool
// answers. That can take long while the pool is saturated: the activity
// heartbeats meanwhile (give it a HeartbeatTimeout). When the pool continues
// as new under a waiting request (runnerapi.ErrTypePoolContinuingAsNew, or
// the server failing the update because the run closed), the same update is
// sent again and reaches the next run, which kept the request's place in its
// queue.
func (a *Runners) AcquireRunner(ctx context.Context, in AcquireInput) (runnerapi.Lease, error) {
	p, req, err := a.acquireRequest(in)
	if err != nil {
		return runnerapi.Lease{}, err
	}
	in.Request = req
	stop := a.heartbeat().heartbeatWhile(ctx, in.Request.JobID, in.Request.Attempt)
	defer stop()
	updateID := runnerapi.AcquireUpdateID(in.Request.JobID, in.Request.Attempt)
	delay := 100 * time.Millisecond
	for {
		lease, err := a.acquireOnce(ctx, p, in.Request, updateID)
		if err == nil {
			a.logger().InfoContext(ctx, "runner machine acquired", "pool", p.Name, "job_id", in.Request.JobID,
				"attempt", in.Request.Attempt, "machine_id", lease.MachineID, "runner", lease.RunnerName)
			return lease, nil
		}
		if ctx.Err() != nil {
			return runnerapi.Lease{}, ctx.Err()
		}
		if !poolMoved(err) {
			return runnerapi.Lease{}, err
		}
		a.logger().DebugContext(ctx, "runner pool continued as new under an acquire; sending it again",
			"pool", p.Name, "update_id", updateID, "error", err)
		select {
		case <-ctx.Done():
			return runnerapi.Lease{}, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

func (a *Runners) acquireOnce(ctx context.Context, p *pools.Pool, req runnerapi.AcquireRequest, updateID string) (runnerapi.Lease, error) {
	start := a.Temporal.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       runnerapi.PoolWorkflowID(p.Name),
		TaskQueue:                a.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, runnerapi.RunnerPoolName, runnerapi.PoolInput{Pool: *p})
	h, err := a.Temporal.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateID:     updateID,
			UpdateName:   runnerapi.UpdateAcquire,
			Args:         []any{req},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return runnerapi.Lease{}, err
	}
	var lease runnerapi.Lease
	if err := h.Get(ctx, &lease); err != nil {
		return runnerapi.Lease{}, err
	}
	return lease, nil
}

// poolMoved reports whether an acquire failed because the pool's run ended
// under it (continue-as-new), so the same update belongs on the next run.
func poolMoved(err error) bool {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		switch ae.Type() {
		case runnerapi.ErrTypePoolContinuingAsNew, "AcceptedUpdateCompletedWorkflow": // the latter: the server's, when a run closes under an accepted update
			return true
		}
	}
	var nf *serviceerror.NotFound // "workflow update was aborted by closing workflow"
	return errors.As(err, &nf)
}

// AcquireNowWait bounds how long AcquireRunnerNow waits for the pool: a
// pool with a machine to hand answers within one workflow task of its own
// (milliseconds); longer means the request queues.
const AcquireNowWait = time.Second

// AcquireAnswer is AcquireRunnerNow's answer: a lease, or Queued when the
// pool did not hand a machine within AcquireNowWait.
type AcquireAnswer struct {
	Lease  runnerapi.Lease
	Queued bool `json:",omitempty"`
	// Why the answer is Queued (for the job's history).
	Why string `json:",omitempty"`
}

// AcquireRunnerNow is the dispatch's fast path, run as a local activity in
// the job's first workflow task: it sends AcquireRunner's Update (the same
// update ID, with update-with-start) and waits at most AcquireNowWait. A
// pool with a machine to hand answers at once, and the job wakes that
// machine in the same workflow task, with no activity task in between.
//
// Otherwise (the pool is saturated, starting, continuing as new, or
// Temporal answers an error) the answer is Queued: an Update the server
// admitted keeps its place in the pool's queue, and AcquireRunner, run
// next as an ordinary activity, re-attaches to it by its update ID; it
// also reports any refusal. Only invalid input (which AcquireRunner would
// refuse the same way) is an error here.
func (a *Runners) AcquireRunnerNow(ctx context.Context, in AcquireInput) (AcquireAnswer, error) {
	p, req, err := a.acquireRequest(in)
	if err != nil {
		return AcquireAnswer{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, AcquireNowWait)
	defer cancel()
	lease, err := a.acquireRunning(wctx, p, req, runnerapi.AcquireUpdateID(req.JobID, req.Attempt))
	if err == nil {
		a.logger().InfoContext(ctx, "runner machine acquired at once", "pool", p.Name, "job_id", req.JobID,
			"attempt", req.Attempt, "machine_id", lease.MachineID, "runner", lease.RunnerName)
		return AcquireAnswer{Lease: lease}, nil
	}
	if ctx.Err() != nil {
		return AcquireAnswer{}, ctx.Err()
	}
	return AcquireAnswer{Queued: true, Why: queuedWhy(wctx, err)}, nil
}

// queuedWhy says why AcquireRunnerNow answers Queued. Its wait ran out when
// wctx's deadline passed, or when the Update's wait ended as timed out or
// cancelled while the activity's own context is live: the server enforces
// the deadline the call carries and may reset the stream a moment before
// the client's timer fires, so wctx can still look live.
func queuedWhy(wctx context.Context, err error) string {
	var waited *client.WorkflowUpdateServiceTimeoutOrCanceledError
	if wctx.Err() != nil || errors.As(err, &waited) {
		return fmt.Sprintf("no machine within %s: the request waits in the pool's queue", AcquireNowWait)
	}
	return err.Error()
}

// acquireRunning sends the acquire Update to the pool's running workflow,
// and only when there is none, with update-with-start (a multi-operation
// request the server handles more slowly).
func (a *Runners) acquireRunning(ctx context.Context, p *pools.Pool, req runnerapi.AcquireRequest, updateID string) (runnerapi.Lease, error) {
	h, err := a.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   runnerapi.PoolWorkflowID(p.Name),
		UpdateID:     updateID,
		UpdateName:   runnerapi.UpdateAcquire,
		Args:         []any{req},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return a.acquireOnce(ctx, p, req, updateID)
	}
	if err != nil {
		return runnerapi.Lease{}, err
	}
	var lease runnerapi.Lease
	if err := h.Get(ctx, &lease); err != nil {
		return runnerapi.Lease{}, err
	}
	return lease, nil
}

// acquireRequest checks an acquire's input and completes its request.
func (a *Runners) acquireRequest(in AcquireInput) (*pools.Pool, runnerapi.AcquireRequest, error) {
	p, err := a.pool(in.Pool)
	if err != nil {
		return nil, runnerapi.AcquireRequest{}, err
	}
	if in.Request.JobID <= 0 || in.Request.Attempt <= 0 {
		return nil, runnerapi.AcquireRequest{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("acquire from pool %s: job %d attempt %d: both must be positive", p.Name, in.Request.JobID, in.Request.Attempt),
			runnerapi.ErrTypeInvalidAcquire, nil)
	}
	if a.Temporal == nil || a.TaskQueue == "" {
		return nil, runnerapi.AcquireRequest{}, invalid("AcquireRunner needs Runners.Temporal and Runners.TaskQueue")
	}
	// The pool reads its configuration again if it has another one.
	in.Request.Config = runnerapi.ConfigFingerprint(*p)
	return p, in.Request, nil
}
