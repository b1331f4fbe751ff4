package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

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
	// ErrNotReady: the preview is still being deployed (503 with
	// Retry-After and the "starting" page).
	ErrNotReady = errors.New("preview not ready yet")
)

const (
	// wakeReuse bounds how long the update ID of a wake whose answer was
	// lost is sent again. It exceeds the longest a PreviewLifecycle holds a
	// wake (45s, and a Dedalus wake's retries): an older ID names an
	// Update that has ended, and whose answer is stale.
	wakeReuse = 3 * time.Minute
	// handoverPause is the pause before a wake the workflow answered with
	// a handover is retried (the next run starts within moments).
	handoverPause = 100 * time.Millisecond
)

// TemporalWaker wakes previews through their PreviewLifecycle workflows.
//
// Each wake is an Update with an ID of the waker's making. A wake whose
// answer was lost (the caller's deadline passed while the workflow was
// still busy, or Temporal was unreachable) is sent again under the same ID,
// so the retry attaches to the Update in flight rather than adding one per
// attempt; once a wake is answered, the next one is a new Update.
type TemporalWaker struct {
	c client.Client

	mu   sync.Mutex
	lost map[string]lostWake // workflow ID → its unanswered wake
	now  func() time.Time
}

type lostWake struct {
	id string
	at time.Time
}

// NewTemporalWaker returns a Waker that sends UpdateWake and SignalTouch.
func NewTemporalWaker(c client.Client) *TemporalWaker {
	return &TemporalWaker{c: c, lost: map[string]lostWake{}, now: time.Now}
}

// Wake sends the wake Update and waits for its result. A workflow that is
// continuing as new (ErrTypePreviewHandover) is asked again at once: the
// next run answers.
func (w *TemporalWaker) Wake(ctx context.Context, workflowID string) (workflows.WakeResult, error) {
	id := w.updateID(workflowID)
	for {
		res, err := w.update(ctx, workflowID, id)
		if err == nil {
			w.answered(workflowID)
			return res, nil
		}
		if errType(err) == workflows.ErrTypePreviewHandover {
			w.answered(workflowID)
			id = w.updateID(workflowID)
			select {
			case <-time.After(handoverPause):
				continue
			case <-ctx.Done():
			}
		}
		err = classify(ctx, workflowID, err)
		if !errors.Is(err, ErrUnavailable) {
			w.answered(workflowID) // an answer: the next wake is a new Update
		}
		return workflows.WakeResult{}, err
	}
}

func (w *TemporalWaker) update(ctx context.Context, workflowID, updateID string) (workflows.WakeResult, error) {
	var res workflows.WakeResult
	h, err := w.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateID:     updateID,
		UpdateName:   workflows.UpdateWake,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &res)
	}
	return res, err
}

// updateID is the ID of the next wake of workflowID: the unanswered one's
// while it is recent, else a new one (remembered until answered).
func (w *TemporalWaker) updateID(workflowID string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if l, ok := w.lost[workflowID]; ok && now.Sub(l.at) < wakeReuse {
		return l.id
	}
	for k, l := range w.lost {
		if now.Sub(l.at) >= wakeReuse {
			delete(w.lost, k)
		}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := "wake-" + hex.EncodeToString(b[:])
	w.lost[workflowID] = lostWake{id: id, at: now}
	return id
}

func (w *TemporalWaker) answered(workflowID string) {
	w.mu.Lock()
	delete(w.lost, workflowID)
	w.mu.Unlock()
}

func errType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return ""
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
//   - an Update the workflow completed without handling: NotFound "workflow
//     update was aborted by closing workflow"
//   - PreviewLifecycle still deploying after the wake's bound: an
//     ApplicationError of type workflows.ErrTypePreviewNotReady
//   - no worker polling: WorkflowUpdateServiceTimeoutOrCanceledError at the deadline
//   - server unreachable: Unavailable
func classify(ctx context.Context, workflowID string, err error) error {
	switch errType(err) {
	case workflows.ErrTypePreviewTornDown:
		return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrPreviewGone, err)
	case workflows.ErrTypePreviewNotReady:
		return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrNotReady, err)
	}
	if strings.Contains(err.Error(), "torn down") {
		return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrPreviewGone, err)
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		if strings.Contains(nf.Error(), "already completed") || strings.Contains(nf.Error(), "closing workflow") {
			return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrPreviewGone, err)
		}
		return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrUnknownPreview, err)
	}
	if unavailable(ctx, err) {
		return fmt.Errorf("wake preview %s: %w: %w", workflowID, ErrUnavailable, err)
	}
	return fmt.Errorf("wake preview %s: %w", workflowID, err)
}

// unavailable: Temporal did not answer in time, is unreachable or
// overloaded, or ctx ended; a later attempt may succeed.
func unavailable(ctx context.Context, err error) bool {
	var (
		timeout *client.WorkflowUpdateServiceTimeoutOrCanceledError
		unavail *serviceerror.Unavailable
		exhaust *serviceerror.ResourceExhausted
		dl      *serviceerror.DeadlineExceeded
	)
	return errors.As(err, &timeout) || errors.As(err, &unavail) || errors.As(err, &exhaust) || errors.As(err, &dl) ||
		errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil
}
