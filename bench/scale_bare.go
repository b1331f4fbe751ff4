package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows"
)

// The scale scenario's floor. Each synchronize burst also signals bare
// workflows (a worker of the bench's own, a workflow that receives the
// signal and does nothing with it), one between each two deliveries, so
// that they share the burst's host, dev server and load. How far the bare
// signal's p99 grows from the baseline's to a point's is what the host and
// the dev server alone do to a signal as the open workflows grow: a ratio
// Drydock's own cannot be expected to beat.
const (
	bareQueue    = "bench-scale-bare"
	bareWorkflow = "ScaleBareSignals"
)

// scaleBare is the bench's worker of bare workflows and their IDs.
type scaleBare struct {
	tc  client.Client
	w   worker.Worker
	ids []string
}

// startScaleBare starts the worker and n bare workflows, and returns once
// each has completed its first workflow task (so is in the worker's cache).
func startScaleBare(ctx context.Context, tc client.Client, n int) (*scaleBare, error) {
	b := &scaleBare{tc: tc, w: worker.New(tc, bareQueue, worker.Options{})}
	b.w.RegisterWorkflowWithOptions(bareSignals, workflow.RegisterOptions{Name: bareWorkflow})
	if err := b.w.Start(); err != nil {
		return nil, fmt.Errorf("start the bare workflows' worker: %w", err)
	}
	for i := range n {
		id := fmt.Sprintf("bench-scale-bare-%d", i)
		if _, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: bareQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING}, bareWorkflow); err != nil {
			b.stop()
			return nil, fmt.Errorf("start bare workflow %s: %w", id, err)
		}
		b.ids = append(b.ids, id)
	}
	for _, id := range b.ids {
		if err := b.awaitFirstTask(ctx, id); err != nil {
			b.stop()
			return nil, err
		}
	}
	return b, nil
}

// awaitFirstTask waits for workflow id's first workflow task to complete.
func (b *scaleBare) awaitFirstTask(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return harness.WaitFor(ctx, "bare workflow "+id+"'s first task", func(ctx context.Context) error {
		it := b.tc.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return err
			}
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
				return nil
			}
		}
		return fmt.Errorf("no workflow task completed yet")
	})
}

// stop terminates the bare workflows and stops the worker.
func (b *scaleBare) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, id := range b.ids {
		_ = b.tc.TerminateWorkflow(ctx, id, "", "bench scale scenario over")
	}
	b.w.Stop()
}

// bareSignals receives pull_request signals and does nothing with them.
func bareSignals(ctx workflow.Context) error {
	ch := workflow.GetSignalChannel(ctx, workflows.SignalPullRequest)
	for {
		var pe workflows.PullRequestEvent
		ch.Receive(ctx, &pe)
	}
}

// signal sends bare signal i of burst tag (to the bare workflows
// round-robin) in the background; wg is done when it was sent.
func (b *scaleBare) signal(ctx context.Context, wg *sync.WaitGroup, tag string, i int, into *syncSent) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		wid := b.ids[i%len(b.ids)]
		id := fmt.Sprintf("scale-bare-%s-%d", tag, i)
		at := time.Now()
		err := b.tc.SignalWorkflow(ctx, wid, "", workflows.SignalPullRequest, workflows.PullRequestEvent{DeliveryID: id})
		*into = syncSent{wid: wid, delivery: id, sent: at, ok: err == nil}
	}()
}
