package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/gh"
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
		if !p.deploying && p.Teardown == "" && p.needsDeploy() {
			p.startDeploy(ctx, sig.deployDone)
		}
		if !p.deploying && !p.waking && workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return p.continueAsNew(ctx, in, sig)
		}
		if p.staleTimer == nil && p.settings.StaleAfter > 0 && p.Status.Phase != PreviewPending {
			p.staleTimer = p.newStaleTimer(ctx)
		}
		p.awaitNext(ctx, sig)
		// A newer push supersedes an in-flight deploy; a teardown cancels it.
		if p.deploying && (p.Teardown != "" || p.Event.HeadSHA != p.deployingSHA) {
			p.cancelDeploy()
		}
	}
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
	if ev.DeliveryID != "" {
		if slices.Contains(p.SeenDeliveries, ev.DeliveryID) {
			return // a redelivered webhook changes nothing
		}
		p.SeenDeliveries = append(p.SeenDeliveries, ev.DeliveryID)
		if len(p.SeenDeliveries) > maxSeenDeliveries {
			p.SeenDeliveries = p.SeenDeliveries[len(p.SeenDeliveries)-maxSeenDeliveries:]
		}
	}
	switch ev.Action {
	case "closed":
		if ev.Number == 0 && ev.DeliveryID == "" && ev.Title != "" {
			// A destroy that a run from before PreviewCarry.Teardown
			// carried as a synthetic event: its reason is in Title.
			p.Teardown = ev.Title
		} else if ev.Merged {
			p.Teardown = "pull request merged"
		} else {
			p.Teardown = "pull request closed"
		}
	case "unlabeled":
		// The webhook forwards unlabeled only in opt-in mode, for the opt-in label.
		p.Teardown = "preview label removed"
	default:
		if ev.Action == "labeled" && ev.ApprovalLabel != "" && ev.HeadSHA != "" {
			// Adding the label approves the head it was added at, and only
			// it; whether that is GitHub's head still, the check before the
			// next deploy decides (the delivery may be an old one).
			if workflow.GetVersion(ctx, staleEventVersion, workflow.DefaultVersion, 1) == 1 {
				p.noteLabeled(ev.HeadSHA)
			} else {
				p.ApprovedSHA = ev.HeadSHA
			}
		}
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

// onDeployFailed marks the preview failed and reports it on the PR with a
// fixed text and the failing step's name. Nothing the app or the machine
// produced reaches the PR (command output, the app's log, an answer of the
// health check, the upstream URL): it could be anything the machine or the
// worker can reach. The details stay in the workflow for operators: the
// activities' errors and results in history, and the status' LastError.
// The machine is kept for debugging unless the settings say otherwise.
func (p *preview) onDeployFailed(ctx workflow.Context, ev PullRequestEvent, err error) {
	report := gh.Report{State: "failed", SHA: ev.HeadSHA, Branch: ev.HeadRef, URL: p.settings.PublicURL,
		FailedStep: p.step, Error: failureText(err)}
	detail := err.Error()
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		detail = ae.Error()
		if ae.Type() == activities.ErrTypeAppUnhealthy && p.Status.MachineID != "" {
			// The app's log is read into history (the activity's result),
			// where operators find it; the PR gets none of it.
			var logs activities.CommandResult
			_ = workflow.ExecuteActivity(withActivity(ctx, "read app log", time.Minute), machineActs.RunCommand, activities.Command{
				MachineID: p.Status.MachineID, Name: "app log", Argv: []string{"sh", "-c", appLogScript}, KeepOutput: true,
			}).Get(ctx, &logs)
		}
	}
	p.Status.LastError = detail
	p.FailedSHA = ev.HeadSHA
	p.setPhase(ctx, PreviewFailed)
	// Counted once per failed deploy (the handler drops it on replay), so
	// an alert can tell a repository whose previews keep failing.
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"repo": RepoKey(p.Status.Owner, p.Status.Repo)}).
		Counter(MetricPreviewFailures).Inc(1)
	workflow.GetLogger(ctx).Warn("preview deploy failed", "sha", ev.HeadSHA, "step", p.step, "error", detail)
	p.setDeploymentStatus(ctx, "failure", truncate(report.Error, 140))
	if !p.settings.KeepFailedMachine {
		p.releaseMachine(ctx)
		report.Note = "the machine was deleted; the next push deploys afresh"
	} else if p.Status.MachineID != "" {
		report.Note = "the machine " + p.Status.MachineID + " is kept for debugging until the next push or close"
	}
	report.Note = strings.TrimPrefix(report.Note+"; the details are in the workflow, for operators", "; ")
	p.report(ctx, report)
}

// failureText is what the PR is told about a failed deploy: a fixed text
// per kind of failure. Only the spec's own problems are passed on as they
// are: Drydock's words about the repository's file, which the PR's readers
// can read anyway (a machine larger than PREVIEW_MAX_* is one: sizes and
// setting names).
func failureText(err error) string {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		return "the deploy failed"
	}
	switch ae.Type() {
	case activities.ErrTypeCommandFailed:
		var res activities.CommandResult
		if ae.HasDetails() && ae.Details(&res) == nil && res.ExitCode != 0 {
			return fmt.Sprintf("the step failed (exit code %d)", res.ExitCode)
		}
		return "the step failed or timed out"
	case activities.ErrTypeAppUnhealthy:
		return "the app did not answer its health check (2xx or 3xx; redirects are not followed) in time"
	case activities.ErrTypeInvalidSpec, activities.ErrTypePreviewSpecTooLarge, activities.ErrTypeMachineTooLarge:
		return ae.Error()
	default:
		return "an error outside the app (Dedalus, GitHub or Drydock)"
	}
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

// refreshAwakeReport rewrites the PR comment with the awake time after a
// wake closed an awake interval, at most once per awakeReportEvery. It runs
// on its own coroutine: the wake returns at once. Every other report waits
// for it, so the comment ends with the newest state.
func (p *preview) refreshAwakeReport(ctx workflow.Context) {
	now := workflow.Now(ctx)
	every := p.settings.AwakeReportEvery
	if every == 0 {
		every = awakeReportEvery // settings from before the option
	}
	if every < 0 || p.awakeReporting || p.Teardown != "" || p.Status.Phase != PreviewReady || now.Sub(p.ReportedAt) < every {
		return
	}
	if workflow.GetVersion(ctx, "preview-awake-report-on-wake", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	p.awakeReporting = true
	r := gh.Report{State: gh.StateReady, SHA: p.Status.DeployedSHA, Branch: p.Event.HeadRef, URL: p.settings.PublicURL}
	workflow.Go(ctx, func(gctx workflow.Context) {
		defer func() { p.awakeReporting = false }()
		p.sendReport(gctx, r)
	})
}

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

func (p *preview) startDeployment(ctx workflow.Context, ev PullRequestEvent) {
	var ref activities.DeploymentRef
	err := workflow.ExecuteActivity(reportCtx(ctx, "start GitHub deployment"), githubActs.StartDeployment, activities.DeploymentInput{
		Owner: ev.Owner, Repo: ev.Repo, Number: ev.Number, InstallationID: ev.InstallationID,
		SHA: ev.HeadSHA, Environment: activities.PreviewEnvironment(ev.Number),
	}).Get(ctx, &ref)
	if err != nil {
		workflow.GetLogger(ctx).Warn("GitHub deployment not created", "error", err)
		return
	}
	p.DeploymentID = ref.ID
}

func (p *preview) setDeploymentStatus(ctx workflow.Context, state, description string) {
	if p.DeploymentID == 0 {
		return
	}
	url := ""
	if state == "success" {
		url = p.settings.PublicURL
	}
	err := workflow.ExecuteActivity(reportCtx(ctx, "deployment "+state), githubActs.SetDeploymentStatus, activities.DeploymentStatusInput{
		Owner: p.Status.Owner, Repo: p.Status.Repo, InstallationID: p.Event.InstallationID,
		DeploymentID: p.DeploymentID, State: state, EnvironmentURL: url, Description: description,
	}).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("GitHub deployment status not set", "state", state, "error", err)
	}
}

// report updates the PR comment, after a wake's refresh of it (if one is in
// flight). Reporting is best effort: GitHub being down must not fail or
// block a preview.
func (p *preview) report(ctx workflow.Context, r gh.Report) {
	if p.awakeReporting {
		_ = workflow.Await(ctx, func() bool { return !p.awakeReporting })
	}
	p.sendReport(ctx, r)
}

// sendReport writes the PR comment, with the awake time so far.
func (p *preview) sendReport(ctx workflow.Context, r gh.Report) {
	now := workflow.Now(ctx)
	r.UpdatedAt = now
	r.AwakeFor = p.Awake.SoFar(now)
	p.ReportedAt = now
	err := workflow.ExecuteActivity(reportCtx(ctx, "comment on PR: "+r.State), githubActs.ReportOnPR, activities.CommentInput{
		Owner: p.Status.Owner, Repo: p.Status.Repo, Number: p.Status.Number, InstallationID: p.Event.InstallationID, Report: r,
	}).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("PR comment not updated", "state", r.State, "error", err)
	}
}

func reportCtx(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
	})
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
