package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
)

// Activity handles: method values on nil receivers name the registered
// activities (the worker registers the real structs).
var (
	machineActs *activities.Machines
	previewActs *activities.Previews
	githubActs  *activities.GitHub
)

const (
	// maxSeenDeliveries bounds the delivery IDs remembered for deduplication.
	maxSeenDeliveries = 256
	// awakeReportEvery bounds how often wakes refresh the awake time on the
	// PR comment (the comment is also written at every deploy, failure and
	// teardown).
	awakeReportEvery = 10 * time.Minute
)

// preview is one PreviewLifecycle run's state. Everything that must survive
// continue-as-new is in carry (a PreviewCarry); the rest is per run.
type preview struct {
	PreviewCarry
	settings activities.PreviewSettings

	deploying    bool
	deployingSHA string
	cancelDeploy workflow.CancelFunc

	waking      bool
	handingOver bool // continuing as new: wakes are answered ErrTypePreviewHandover
	lastWakeAt  time.Time
	lastWakeErr error
	staleTimer  workflow.Future
	// awakeReporting: a wake's refresh of the PR comment is in flight.
	awakeReporting bool
	// step is the deploy step running (or the last one run): the PR's
	// failure report names it.
	step string
	// approvalRevoked: the run took the opt-in label off a fork's pull
	// request; its teardown says why on the PR even if nothing was deployed.
	approvalRevoked bool
	// redeployAsked: the deploy running was asked for as a redeploy (a
	// stale delivery that is ignored gives the request back).
	redeployAsked bool
	// batched: the deploy running takes the fewer round trips of
	// deployBatchedVersion (see preview_deploy_batched.go).
	batched bool
}

// PreviewLifecycle runs one pull request's preview from its first deployable
// event until the PR closes, the preview is destroyed, or it goes stale.
func PreviewLifecycle(ctx workflow.Context, in PreviewInput) error {
	p, err := startPreview(ctx, in)
	if err != nil {
		return err
	}
	return p.run(ctx, in)
}

// run is the main loop: the workflow's root coroutine waits in it (in
// awaitNext) for as long as the preview is open, and every cached preview
// keeps that goroutine's stack. The functions on that path keep their
// frames small (no event or channel set by value, the pending events
// folded in elsewhere): under 4 KiB in use, Go's collector halves a
// parked goroutine's 16 KiB stack to 8 KiB.
func (p *preview) run(ctx workflow.Context, in PreviewInput) error {
	sig := newPreviewSignals(ctx)
	p.foldPending(ctx)
	for {
		if ctx.Err() != nil && p.Teardown == "" {
			p.Teardown = "the workflow was cancelled"
		}
		if p.Teardown != "" && !p.deploying {
			return p.tearDown(ctx, in, sig.pr)
		}
		if p.deployDue() {
			p.startDeploy(ctx, sig.deployDone)
		}
		if p.handOverDue(ctx) {
			return p.continueAsNew(ctx, in, sig)
		}
		if p.staleTimerDue() {
			p.staleTimer = p.newStaleTimer(ctx)
		}
		p.awaitNext(ctx, sig)
		// A newer push supersedes an in-flight deploy; a teardown cancels it.
		if p.deploySuperseded() {
			p.cancelDeploy()
		}
	}
}

// deployDue: no deploy runs, no teardown is due, and the head needs one.
func (p *preview) deployDue() bool {
	return !p.deploying && p.Teardown == "" && p.needsDeploy()
}

// handOverDue: history is long and no deploy or wake holds the run.
func (p *preview) handOverDue(ctx workflow.Context) bool {
	return !p.deploying && !p.waking && workflow.GetInfo(ctx).GetContinueAsNewSuggested()
}

// staleTimerDue: the preview can go stale and no check is armed.
func (p *preview) staleTimerDue() bool {
	return p.staleTimer == nil && p.settings.StaleAfter > 0 && p.Status.Phase != PreviewPending
}

// deploySuperseded: the deploy running is for an older head, or a teardown
// is due.
func (p *preview) deploySuperseded() bool {
	return p.deploying && (p.Teardown != "" || p.Event.HeadSHA != p.deployingSHA)
}

// newPreviewSignals opens the run's signal channels.
func newPreviewSignals(ctx workflow.Context) *previewSignals {
	return &previewSignals{
		pr:         workflow.GetSignalChannel(ctx, SignalPullRequest),
		redeploy:   workflow.GetSignalChannel(ctx, SignalRedeploy),
		destroy:    workflow.GetSignalChannel(ctx, SignalDestroy),
		touch:      workflow.GetSignalChannel(ctx, SignalTouch),
		deployDone: workflow.NewBufferedChannel(ctx, 1),
	}
}

// foldPending folds in the events the previous run carried. Not inlined:
// its event would take room in run's frame (see run).
//
//go:noinline
func (p *preview) foldPending(ctx workflow.Context) {
	pending := p.Pending
	p.Pending = nil
	for _, ev := range pending {
		p.onPullRequest(ctx, ev)
	}
}

// previewSignals are a run's signal channels, and its deploy's completion.
type previewSignals struct {
	pr, redeploy, destroy, touch workflow.ReceiveChannel
	deployDone                   workflow.Channel
}

// startPreview sets up a run: its state (carried or fresh), its settings,
// its search attributes and its query and update handlers.
func startPreview(ctx workflow.Context, in PreviewInput) (*preview, error) {
	p := &preview{}
	if in.Carry != nil {
		p.PreviewCarry = *in.Carry
	} else {
		p.Status = PreviewStatus{Phase: PreviewPending, Owner: in.Owner, Repo: in.Repo, Number: in.Number, CreatedAt: workflow.Now(ctx)}
	}
	sctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	if err := workflow.ExecuteLocalActivity(sctx, previewActs.Settings, in.Owner, in.Repo, in.Number).Get(ctx, &p.settings); err != nil {
		return nil, fmt.Errorf("read preview settings: %w", err)
	}
	// Known before the query handler answers: the router never sees a
	// status without the visibility of this run's settings.
	p.Status.Visibility = p.visibility()
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrRepo.ValueSet(RepoKey(in.Owner, in.Repo)), SearchAttrPRNumber.ValueSet(int64(in.Number)),
		SearchAttrPhase.ValueSet(string(p.Status.Phase)), SearchAttrMachineID.ValueSet(p.Status.MachineID))

	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (PreviewStatus, error) { return p.status(ctx), nil }); err != nil {
		return nil, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateWake, p.wake, workflow.UpdateHandlerOptions{Validator: p.validateWake}); err != nil {
		return nil, err
	}
	return p, nil
}

// awaitNext waits for the next signal, deploy completion or stale check,
// and folds it into the state.
func (p *preview) awaitNext(ctx workflow.Context, sig *previewSignals) {
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(sig.pr, func(c workflow.ReceiveChannel, _ bool) {
		var ev PullRequestEvent
		c.Receive(ctx, &ev)
		p.onPullRequest(ctx, ev)
	})
	sel.AddReceive(sig.redeploy, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		workflow.GetLogger(ctx).Info("redeploy requested")
		p.PendingRedeploy = true
		p.FailedSHA = ""
	})
	sel.AddReceive(sig.destroy, func(c workflow.ReceiveChannel, _ bool) {
		var req DestroyRequest
		c.Receive(ctx, &req)
		p.Teardown = destroyReason(req)
	})
	sel.AddReceive(sig.touch, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		p.Status.LastActivityAt = workflow.Now(ctx)
	})
	sel.AddReceive(sig.deployDone, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		p.deploying = false
	})
	if p.staleTimer != nil {
		sel.AddFuture(p.staleTimer, func(workflow.Future) {
			p.staleTimer = nil
			if p.isStale(ctx) {
				p.Teardown = fmt.Sprintf("stale: no push and no preview traffic for %s", p.settings.StaleAfter)
			}
		})
	}
	sel.Select(ctx)
}

// onPullRequest folds one webhook event into the state.
func (p *preview) onPullRequest(ctx workflow.Context, ev PullRequestEvent) {
	if p.seenDelivery(ev.DeliveryID) {
		return // a redelivered webhook changes nothing
	}
	switch ev.Action {
	case "closed":
		p.Teardown = closedReason(ev)
	case "unlabeled":
		// The webhook forwards unlabeled only in opt-in mode, for the opt-in label.
		p.Teardown = "preview label removed"
	default:
		p.onLabeled(ctx, ev)
		p.onHead(ctx, ev)
	}
}

// seenDelivery reports a delivery seen before, and remembers a new one
// (the newest maxSeenDeliveries).
func (p *preview) seenDelivery(id string) bool {
	if id == "" {
		return false
	}
	if slices.Contains(p.SeenDeliveries, id) {
		return true
	}
	p.SeenDeliveries = appendBounded(p.SeenDeliveries, id, maxSeenDeliveries)
	return false
}

// appendBounded appends v and keeps the newest keep entries.
func appendBounded(list []string, v string, keep int) []string {
	list = append(list, v)
	if len(list) > keep {
		list = list[len(list)-keep:]
	}
	return list
}

// closedReason is the teardown reason of a closed event.
func closedReason(ev PullRequestEvent) string {
	switch {
	case ev.Number == 0 && ev.DeliveryID == "" && ev.Title != "":
		// A destroy that a run from before PreviewCarry.Teardown
		// carried as a synthetic event: its reason is in Title.
		return ev.Title
	case ev.Merged:
		return "pull request merged"
	default:
		return "pull request closed"
	}
}

// onLabeled notes the head a labeled event of the opt-in label approves.
func (p *preview) onLabeled(ctx workflow.Context, ev PullRequestEvent) {
	if ev.Action != "labeled" || ev.ApprovalLabel == "" || ev.HeadSHA == "" {
		return
	}
	// Adding the label approves the head it was added at, and only
	// it; whether that is GitHub's head still, the check before the
	// next deploy decides (the delivery may be an old one).
	if workflow.GetVersion(ctx, staleEventVersion, workflow.DefaultVersion, 1) == 1 {
		p.noteLabeled(ev.HeadSHA)
	} else {
		p.ApprovedSHA = ev.HeadSHA
	}
}

// onHead folds in the event's head: a push, the first event, or the label
// that admits a head already known.
func (p *preview) onHead(ctx workflow.Context, ev PullRequestEvent) {
	if ev.HeadSHA != "" && ev.HeadSHA != p.Event.HeadSHA {
		p.Event = ev
		p.Status.HeadSHA = ev.HeadSHA
		p.Status.LastActivityAt = workflow.Now(ctx) // a push counts as activity
	} else if p.Event.HeadSHA == "" {
		p.Event = ev
	} else if ev.HeadSHA == p.Event.HeadSHA && p.Event.ApprovalLabel == "" && ev.ApprovalLabel != "" &&
		workflow.GetVersion(ctx, staleEventVersion, workflow.DefaultVersion, 1) == 1 {
		// The head's event was queued before the approval check existed
		// (it carries no label): a newer delivery of the same head says
		// which label admits it, and its redeploys are checked too.
		p.Event.ApprovalLabel = ev.ApprovalLabel
	}
}

func destroyReason(req DestroyRequest) string {
	if req.Reason == "" {
		return "destroyed by an operator"
	}
	return req.Reason
}

func (p *preview) needsDeploy() bool {
	if p.Event.HeadSHA == "" {
		return false
	}
	if p.PendingRedeploy {
		return true
	}
	return p.Event.HeadSHA != p.Status.DeployedSHA && p.Event.HeadSHA != p.FailedSHA
}

func (p *preview) isStale(ctx workflow.Context) bool {
	return workflow.Now(ctx).Sub(p.Status.LastActivityAt) >= p.settings.StaleAfter
}

func (p *preview) newStaleTimer(ctx workflow.Context) workflow.Future {
	wait := p.Status.LastActivityAt.Add(p.settings.StaleAfter).Sub(workflow.Now(ctx))
	if wait < time.Second {
		wait = time.Second
	}
	return workflow.NewTimerWithOptions(ctx, wait, workflow.TimerOptions{Summary: "stale preview check"})
}

func (p *preview) setPhase(ctx workflow.Context, phase PreviewPhase) {
	p.Status.Phase = phase
	_ = workflow.UpsertTypedSearchAttributes(ctx, SearchAttrPhase.ValueSet(string(phase)), SearchAttrMachineID.ValueSet(p.Status.MachineID))
}

// activity options: infrastructure errors retry with backoff, but not forever.
func withActivity(ctx workflow.Context, summary string, timeout time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: timeout,
		// Activities heartbeat every 2s: a dead worker's activity is retried
		// elsewhere within 10s.
		HeartbeatTimeout:    10 * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 8,
		},
	})
}

// createMachineOptions are the options of a machine create: retried with
// backoff for as long as the errors are transient (an idempotency key makes
// every retry return the same machine), up to an hour. Giving up earlier
// could abandon a machine Dedalus made but whose answer was lost; the
// reconciler deletes what an hour of failures still leaves.
func createMachineOptions(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:                summary,
		StartToCloseTimeout:    10 * time.Minute,
		ScheduleToCloseTimeout: time.Hour,
		HeartbeatTimeout:       10 * time.Second, // it heartbeats every 2s
		WaitForCancellation:    true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
		},
	})
}

func (p *preview) startDeploy(ctx workflow.Context, done workflow.Channel) {
	ev := p.Event
	p.redeployAsked = p.PendingRedeploy
	p.PendingRedeploy = false
	p.deploying = true
	p.deployingSHA = ev.HeadSHA
	dctx, cancel := workflow.WithCancel(ctx)
	p.cancelDeploy = cancel
	workflow.Go(dctx, func(gctx workflow.Context) {
		defer done.SendAsync(struct{}{})
		err := p.deploy(gctx, ev)
		switch {
		case err == nil:
		case temporal.IsCanceledError(err) || gctx.Err() != nil:
			workflow.GetLogger(gctx).Info("deploy superseded or cancelled", "sha", ev.HeadSHA)
			// The cancelled deploy may have checked out and built its head
			// already: whatever head comes next is deployed in full, even
			// the one deployed before (a push back to it).
			if workflow.GetVersion(gctx, "redeploy-after-cancelled-deploy", workflow.DefaultVersion, 1) == 1 {
				p.PendingRedeploy = true
			}
		default:
			// Blocking calls here must use this coroutine's context; a
			// disconnected one lets the failure report finish even if a
			// teardown cancels the deploy meanwhile.
			rctx, _ := workflow.NewDisconnectedContext(gctx)
			p.onDeployFailed(rctx, ev, err)
		}
	})
}

// status answers QueryStatus, with the awake time as of the workflow's clock.
func (p *preview) status(ctx workflow.Context) PreviewStatus {
	st := p.Status
	now := workflow.Now(ctx)
	st.AwakeSeconds = p.Awake.SoFar(now).Seconds()
	st.AwakeSince = p.Awake.Since
	st.AwakeAsOf = now
	return st
}

// observe folds a machine activity's result into the awake meter and
// brings drydock_preview_awake_seconds_total up to the closed intervals. It
// returns the awake time the result closed.
func (p *preview) observe(ctx workflow.Context, m activities.MachineRef) time.Duration {
	closed := observeRef(&p.Awake, m, workflow.Now(ctx))
	if closed > 0 {
		countAwake(previewAwakeCounter(ctx, p.Status.Owner, p.Status.Repo, p.Status.Number), p.Awake.Total, &p.AwakeCounted)
	}
	return closed
}

func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
