package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/previewspec"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// previewCapsVersion guards the caps of issue 13 in PreviewLifecycle: the
// machine size check, the slot asked of PreviewSlots before a machine is
// created, and the wait (not an hour of retries) on a Dedalus quota error.
const previewCapsVersion = "preview-caps"

// Where a preview stands with the PreviewSlots coordinator (PreviewCarry.Slot).
const (
	SlotHeld   = "held"
	SlotQueued = "queued"
)

const (
	// slotAskAgainEvery: a queued preview asks again this often, in case a
	// grant signal was lost (the coordinator signals at once otherwise). A
	// queued run cannot continue as new (it is deploying): each ask is a
	// few history events, a few hundred a day.
	slotAskAgainEvery = 15 * time.Minute
	// Waiting out a Dedalus quota: 30s, 1m, 2m, 4m, then every 5m.
	quotaWaitFirst = 30 * time.Second
	quotaWaitMax   = 5 * time.Minute
)

// admit decides whether the preview may create its machine: the spec's
// machine must fit PREVIEW_MAX_VCPU, _MEMORY_MIB and _STORAGE_GIB (else a
// non-retryable PreviewMachineTooLarge failure, reported on the PR), and,
// when a count cap is set, the preview must hold a slot of the PreviewSlots
// coordinator: a queued preview says so on the PR and waits for its grant.
// It returns false for histories recorded before the caps.
func (p *preview) admit(ctx workflow.Context, ev PullRequestEvent, spec previewspec.Spec) (bool, error) {
	if workflow.GetVersion(ctx, previewCapsVersion, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return false, nil
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var caps activities.PreviewCaps
	if err := workflow.ExecuteLocalActivity(lctx, previewActs.PreviewCaps).Get(ctx, &caps); err != nil {
		return true, fmt.Errorf("read preview caps: %w", err)
	}
	if why := caps.CheckMachine(spec.Machine.VCPU, spec.Machine.MemoryMiB, spec.Machine.StorageGiB); why != "" {
		return true, temporal.NewNonRetryableApplicationError(why, activities.ErrTypeMachineTooLarge, nil)
	}
	if !caps.Slots.Limited() && p.Slot == "" {
		return true, nil // no cap: nothing to count against
	}
	return true, p.holdSlot(ctx, ev)
}

// holdSlot asks the coordinator for a slot until it grants one: a queued
// preview says so on the PR (again when the reason changes) and waits for
// the grant, asking again every slotAskAgainEvery.
func (p *preview) holdSlot(ctx workflow.Context, ev PullRequestEvent) error {
	granted := workflow.GetSignalChannel(ctx, slotsapi.SignalGranted)
	for granted.ReceiveAsync(nil) {
		// grants of an earlier wait: the coordinator's answer is the truth
	}
	reported := ""
	for {
		ans, err := p.requestSlot(ctx)
		if err != nil {
			return err
		}
		if ans.Granted {
			p.Slot = SlotHeld
			return nil
		}
		p.Slot = SlotQueued
		if ans.Reason != reported {
			reported = ans.Reason
			workflow.GetLogger(ctx).Info("preview queued for a slot", "reason", ans.Reason, "position", ans.Position)
			p.report(ctx, gh.Report{State: gh.StateQueued, SHA: ev.HeadSHA, Branch: ev.HeadRef, Note: fmt.Sprintf(
				"%s; this preview is number %d in the queue and starts by itself when a slot frees", ans.Reason, ans.Position)})
		}
		got, err := awaitGrant(ctx, granted)
		if err != nil {
			return err
		}
		if got {
			p.Slot = SlotHeld
			return nil
		}
	}
}

// awaitGrant waits for the coordinator's grant, at most slotAskAgainEvery.
func awaitGrant(ctx workflow.Context, granted workflow.ReceiveChannel) (bool, error) {
	sel := workflow.NewSelector(ctx)
	got := false
	sel.AddReceive(granted, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); got = true })
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
	sel.AddFuture(workflow.NewTimerWithOptions(ctx, slotAskAgainEvery, workflow.TimerOptions{Summary: "ask for a slot again"}), func(workflow.Future) {})
	sel.Select(ctx)
	if ctx.Err() != nil {
		return false, temporal.NewCanceledError("deploy superseded or cancelled while queued for a slot")
	}
	return got, nil
}

// requestSlot asks the coordinator (Update-with-start, through an activity).
func (p *preview) requestSlot(ctx workflow.Context) (slotsapi.Answer, error) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             "ask for a preview slot",
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidArgument},
		},
	})
	var ans slotsapi.Answer
	err := workflow.ExecuteActivity(actx, slotActs.RequestSlot, slotsapi.Request{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, Owner: p.Status.Owner, Repo: p.Status.Repo, Number: p.Status.Number,
	}).Get(ctx, &ans)
	return ans, err
}

// createMachine creates the preview's machine. In runs with the caps
// (capped: previewCapsVersion), a Dedalus quota error is not retried for an
// hour in silence: the PR says the preview is queued, and the create is tried again after a bounded
// backoff until it succeeds or the deploy is superseded; any other failure
// gives the slot back (no machine holds it).
func (p *preview) createMachine(ctx, cctx workflow.Context, spec previewspec.Spec, ev PullRequestEvent, capped bool) (activities.MachineRef, error) {
	wait := quotaWaitFirst
	for attempt := 1; ; attempt++ {
		var m activities.MachineRef
		err := workflow.ExecuteActivity(createMachineOptions(cctx, "create machine"), machineActs.CreateMachine,
			activities.MachineSpec{VCPU: spec.Machine.VCPU, MemoryMiB: spec.Machine.MemoryMiB, StorageGiB: spec.Machine.StorageGiB, Autosleep: spec.Machine.Autosleep},
		).Get(cctx, &m)
		if err == nil || !capped {
			return m, err
		}
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeQuotaExceeded {
			p.releaseSlot(cctx)
			return m, err
		}
		workflow.GetLogger(ctx).Warn("Dedalus quota reached: waiting before creating the machine again", "attempt", attempt, "wait", wait, "error", err)
		if attempt == 1 {
			p.report(cctx, gh.Report{State: gh.StateQueued, SHA: ev.HeadSHA, Branch: ev.HeadRef,
				Note: "queued: the machine provider's quota is reached (no new machine can be created now); the preview starts by itself when it can"})
		}
		if err := workflow.NewTimerWithOptions(ctx, wait, workflow.TimerOptions{Summary: "wait for machine quota"}).Get(ctx, nil); err != nil {
			return m, temporal.NewCanceledError("deploy superseded or cancelled while waiting for machine quota")
		}
		wait = min(2*wait, quotaWaitMax)
	}
}

// releaseSlot gives the preview's slot (or queue place) back: its machine
// is gone, or it will not make one.
func (p *preview) releaseSlot(ctx workflow.Context) {
	if p.Slot == "" {
		return
	}
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	if err := workflow.SignalExternalWorkflow(ctx, slotsapi.WorkflowID, "", slotsapi.SignalRelease, id).Get(ctx, nil); err != nil {
		// The coordinator is not running: it counts nothing for anyone.
		workflow.GetLogger(ctx).Info("preview slot coordinator not running; nothing to release", "error", err)
	}
	p.Slot = ""
}
