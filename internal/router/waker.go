package router

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/workflows"
)

// Waker wakes previews and reports their traffic. The router calls Wake on a
// cold path (one call per preview at a time in a process) and Touch at most
// once per interval per preview, off the request path.
type Waker interface {
	Wake(ctx context.Context, workflowID string) (workflows.WakeResult, error)
	Touch(ctx context.Context, workflowID string) error
}

// Errors a Waker returns (wrapped) that the router answers with a page of its own.
var (
	// ErrUnknownPreview: no such preview workflow (404).
	ErrUnknownPreview = errors.New("no such preview")
	// ErrPreviewGone: the preview was torn down or is being torn down (410).
	ErrPreviewGone = errors.New("preview torn down")
	// ErrUnavailable: Temporal (or the preview's worker) did not answer in
	// time; worth retrying shortly (503 with Retry-After).
	ErrUnavailable = errors.New("preview service unavailable")
)

// TemporalWaker wakes previews through their PreviewLifecycle workflows.
type TemporalWaker struct {
	c client.Client
}

// NewTemporalWaker returns a Waker that sends UpdateWake and SignalTouch.
func NewTemporalWaker(c client.Client) *TemporalWaker {
	return &TemporalWaker{c: c}
}

// Wake sends the wake Update and waits for its result.
func (w *TemporalWaker) Wake(ctx context.Context, workflowID string) (workflows.WakeResult, error) {
	var res workflows.WakeResult
	h, err := w.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateName:   workflows.UpdateWake,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &res)
	}
	if err != nil {
		return workflows.WakeResult{}, classify(ctx, workflowID, err)
	}
	return res, nil
}

// Touch signals preview traffic. A preview that no longer exists needs no
// keeping alive, so NotFound is not an error.
func (w *TemporalWaker) Touch(ctx context.Context, workflowID string) error {
	err := w.c.SignalWorkflow(ctx, workflowID, "", workflows.SignalTouch, nil)
	var nf *serviceerror.NotFound
	if err == nil || errors.As(err, &nf) {
		return nil
	}
	return fmt.Errorf("touch preview %s: %w", workflowID, err)
}

// classify maps what the SDK and the server answer to the router's errors.
// What the dev server (1.29) answers, as TestTemporalWaker records:
//
//   - unknown workflow ID: NotFound "workflow not found for ID: ..."
//   - completed workflow: NotFound "workflow execution already completed"
//   - validator rejection: the validator's ApplicationError (type
//     workflows.ErrTypePreviewTornDown during teardown)
//   - no worker polling: WorkflowUpdateServiceTimeoutOrCanceledError at the deadline
//   - server unreachable: Unavailable
func classify(ctx context.Context, workflowID string, err error) error {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() == workflows.ErrTypePreviewTornDown || strings.Contains(err.Error(), "torn down") {
		return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrPreviewGone, err)
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		if strings.Contains(nf.Error(), "already completed") {
			return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrPreviewGone, err)
		}
		return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrUnknownPreview, err)
	}
	var (
		timeout *client.WorkflowUpdateServiceTimeoutOrCanceledError
		unavail *serviceerror.Unavailable
		exhaust *serviceerror.ResourceExhausted
		dl      *serviceerror.DeadlineExceeded
	)
	if errors.As(err, &timeout) || errors.As(err, &unavail) || errors.As(err, &exhaust) || errors.As(err, &dl) ||
		errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrUnavailable, err)
	}
	return fmt.Errorf("wake preview %s: %w", workflowID, err)
}
