package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
)

// Types of the errors UpdateWake answers with; the router maps each to an
// answer of its own.
const (
	// ErrTypePreviewTornDown: the preview is being torn down (the validator
	// rejects the wake, or a waiting wake learns it). The router answers 410.
	ErrTypePreviewTornDown = "PreviewTornDown"
	// ErrTypePreviewNotReady: the preview is still deploying after the wake
	// waited wakeWaitMax for it. Retryable: the router answers 503 with
	// Retry-After, and the next wake is a new Update.
	ErrTypePreviewNotReady = "PreviewNotReady"
	// ErrTypePreviewHandover: the run is handing over to the next one
	// (continue-as-new). Retryable at once: the retried Update reaches the
	// next run.
	ErrTypePreviewHandover = "PreviewHandover"
	// ErrTypePreviewFailed: the preview's deploy failed (the router answers 502).
	ErrTypePreviewFailed = "PreviewFailed"
)

const (
	// wakeFresh: a machine woken this recently is not woken again.
	wakeFresh = 2 * time.Second
	// wakeWaitMax bounds how long a wake waits for a preview that is not
	// ready (deploying, or another wake in flight). A deploy can take many
	// minutes; a wake held open for all of it would hold the router's call,
	// and one more Update per router retry would pile up in the workflow.
	wakeWaitMax = 45 * time.Second
)

// validateWake admits a wake unless the preview is being torn down or the
// run is handing over to the next; it has no side effects.
func (p *preview) validateWake() error {
	if p.tornDown() {
		return errTornDown()
	}
	if p.handingOver {
		return errHandover()
	}
	return nil
}

func (p *preview) tornDown() bool {
	return p.Teardown != "" || p.Status.Phase == PreviewTearingDown || p.Status.Phase == PreviewDestroyed
}

func errTornDown() error {
	return temporal.NewApplicationError("preview is being torn down", ErrTypePreviewTornDown)
}

func errHandover() error {
	return temporal.NewApplicationError("preview workflow is continuing as new: retry", ErrTypePreviewHandover)
}

// servable says whether a wake can be answered now: the preview is ready
// (and no other wake is waking it), failed, or going away, or the run is
// handing over.
func (p *preview) servable() bool {
	if p.handingOver {
		return true
	}
	switch p.Status.Phase {
	case PreviewReady, PreviewFailed, PreviewTearingDown, PreviewDestroyed:
		return !p.waking
	}
	return p.Teardown != ""
}

// awaitServable waits until the wake can be answered, at most wakeWaitMax
// (ErrTypePreviewNotReady after that). Runs recorded before the bound wait
// without one.
func (p *preview) awaitServable(ctx workflow.Context) error {
	if p.servable() {
		return nil
	}
	if workflow.GetVersion(ctx, "preview-wake-bounded-wait", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return workflow.Await(ctx, p.servable)
	}
	ok, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout: wakeWaitMax, TimerOptions: workflow.TimerOptions{Summary: "wake waits for the preview"},
	}, p.servable)
	if err != nil {
		return err
	}
	if !ok {
		return temporal.NewApplicationError(fmt.Sprintf("preview is not ready yet (%s)", p.Status.Phase), ErrTypePreviewNotReady)
	}
	return nil
}

// wake is the UpdateWake handler: it waits (bounded) until the preview can
// serve, then wakes the machine once for all concurrent callers.
func (p *preview) wake(ctx workflow.Context) (WakeResult, error) {
	if err := p.awaitServable(ctx); err != nil {
		return WakeResult{}, err
	}
	switch {
	case p.tornDown():
		return WakeResult{}, errTornDown()
	case p.handingOver:
		return WakeResult{}, errHandover()
	case p.Status.Phase == PreviewFailed:
		return WakeResult{}, temporal.NewApplicationError("preview failed to deploy: "+p.Status.LastError, ErrTypePreviewFailed)
	}
	now := workflow.Now(ctx)
	p.Status.LastActivityAt = now
	if now.Sub(p.lastWakeAt) < wakeFresh && p.lastWakeErr == nil {
		return WakeResult{URL: p.Status.URL, MachineID: p.Status.MachineID}, nil
	}
	p.waking = true
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumAttempts: 5},
	})
	var m activities.MachineRef
	err := workflow.ExecuteLocalActivity(lctx, machineActs.WakeMachine, p.Status.MachineID).Get(ctx, &m)
	p.waking = false
	p.lastWakeAt = workflow.Now(ctx)
	p.lastWakeErr = err
	if err != nil {
		return WakeResult{}, fmt.Errorf("wake machine %s: %w", p.Status.MachineID, err)
	}
	p.Status.Wakes++
	if p.observe(ctx, m) > 0 {
		// The machine had fallen asleep: an awake interval closed.
		p.refreshAwakeReport(ctx)
	}
	return WakeResult{URL: p.Status.URL, MachineID: p.Status.MachineID}, nil
}
