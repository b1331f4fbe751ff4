package workflows

import (
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/gh"
)

// The end of a PreviewLifecycle run: the teardown (and a restart when the
// pull request came back meanwhile), the release of the machine, and the
// hand-over to a fresh run.

// tearDown deletes everything the preview owns and completes the workflow,
// unless the pull request came back meanwhile (restartAfterTeardown).
func (p *preview) tearDown(ctx workflow.Context, in PreviewInput, prCh workflow.ReceiveChannel) error {
	// Teardown must finish even when the workflow itself is being cancelled.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	workflow.GetLogger(ctx).Info("tearing down preview", "reason", p.Teardown)
	// A preview that never began deploying told GitHub nothing: say nothing now.
	began := p.Status.Phase != PreviewPending || p.approvalRevoked
	p.setPhase(dctx, PreviewTearingDown)
	p.releaseMachine(dctx)
	p.setPhase(dctx, PreviewDestroyed)
	if began {
		p.setDeploymentStatus(dctx, "inactive", "preview torn down")
		p.report(dctx, gh.Report{State: "destroyed", SHA: p.Status.DeployedSHA, Branch: p.Event.HeadRef, Note: "torn down: " + p.Teardown})
	}
	if err := workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) }); err != nil {
		return err
	}
	if ctx.Err() == nil {
		return p.restartAfterTeardown(dctx, in, prCh)
	}
	return nil
}

// restartAfterTeardown answers the pull request events that arrived during
// the teardown (the webhook was told 202): when one of them would start a
// preview (reopened, labeled, a push), a fresh preview starts in a new run
// with them; otherwise the workflow completes. A delivery that arrived out
// of order (opened after closed) costs the new run a question to GitHub and
// nothing else.
func (p *preview) restartAfterTeardown(ctx workflow.Context, in PreviewInput, prCh workflow.ReceiveChannel) error {
	var again []PullRequestEvent
	restart := false
	for {
		var ev PullRequestEvent
		if !prCh.ReceiveAsync(&ev) {
			break
		}
		if ev.DeliveryID != "" && slices.Contains(p.SeenDeliveries, ev.DeliveryID) {
			continue // a redelivery of an event the torn-down preview had
		}
		again = append(again, ev)
		restart = restart || ev.Action != "closed" && ev.Action != "unlabeled"
	}
	if !restart || workflow.GetVersion(ctx, "preview-restart-after-teardown", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	workflow.GetLogger(ctx).Info("pull request events arrived during the teardown: a fresh preview starts", "events", len(again))
	fresh := PreviewCarry{
		Status:         PreviewStatus{Phase: PreviewPending, Owner: in.Owner, Repo: in.Repo, Number: in.Number, CreatedAt: workflow.Now(ctx)},
		SeenDeliveries: p.SeenDeliveries,
		Pending:        again,
		// The awake time is the pull request's, over all its machines.
		Awake: p.Awake, AwakeCounted: p.AwakeCounted,
	}
	return workflow.NewContinueAsNewError(ctx, PreviewLifecycleName, PreviewInput{Owner: in.Owner, Repo: in.Repo, Number: in.Number, Carry: &fresh})
}

// continueAsNew hands the state to a fresh run once history is long, after
// every handler finished and every buffered signal was drained into the carry.
func (p *preview) continueAsNew(ctx workflow.Context, in PreviewInput, sig *previewSignals) error {
	// Wakes do not hold the hand-over up: waiting ones answer, and new ones
	// are rejected, with ErrTypePreviewHandover, which the router retries
	// against the next run. (Runs recorded before waited for every wake.)
	if workflow.GetVersion(ctx, "preview-wake-handover", workflow.DefaultVersion, 1) == 1 {
		p.handingOver = true
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) && !p.awakeReporting }); err != nil {
		return err
	}
	for {
		var ev PullRequestEvent
		if !sig.pr.ReceiveAsync(&ev) {
			break
		}
		p.Pending = append(p.Pending, ev)
	}
	for sig.redeploy.ReceiveAsync(nil) {
		p.PendingRedeploy = true
	}
	var req DestroyRequest
	for sig.destroy.ReceiveAsync(&req) {
		// The next run tears down at once, for the first destroy's reason.
		if p.Teardown == "" {
			p.Teardown = destroyReason(req)
		}
	}
	for sig.touch.ReceiveAsync(nil) {
		p.Status.LastActivityAt = workflow.Now(ctx)
	}
	// FailedSHA is carried too: the next run does not rebuild a failed head.
	carry := p.PreviewCarry
	next := PreviewInput{Owner: in.Owner, Repo: in.Repo, Number: in.Number, Carry: &carry}
	return workflow.NewContinueAsNewError(ctx, PreviewLifecycleName, next)
}

// releaseMachine deletes the preview and machine; a later deploy starts afresh.
func (p *preview) releaseMachine(ctx workflow.Context) {
	tctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute, HeartbeatTimeout: 30 * time.Second,
		// Deleting must eventually succeed, or a machine leaks: retry for as long as it takes.
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 5 * time.Minute},
	})
	if p.Status.PreviewID != "" {
		if err := workflow.ExecuteActivity(tctx, machineActs.DeletePreview, p.Status.MachineID, p.Status.PreviewID).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Error("delete preview failed", "error", err)
		}
	}
	if p.Status.MachineID != "" {
		var gone activities.MachineRef
		if err := workflow.ExecuteActivity(tctx, machineActs.DeleteMachine, p.Status.MachineID).Get(ctx, &gone); err != nil {
			workflow.GetLogger(ctx).Error("delete machine failed", "error", err)
		} else {
			if gone.Phase == "" {
				gone.Phase = dedalus.PhaseDestroyed // an older worker's answer
			}
			p.observe(ctx, gone)
		}
	}
	p.Status.MachineID, p.Status.PreviewID, p.Status.URL = "", "", ""
	p.SetupDone, p.SeedDone = false, false
	p.releaseSlot(ctx) // no machine: no slot (preview_slots_lifecycle.go)
}
