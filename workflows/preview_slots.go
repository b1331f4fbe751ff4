package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// slotActs names the slot activities (the worker registers the real struct).
var slotActs *activities.PreviewSlots

const (
	// slotCheckEvery is how often the coordinator checks that the previews
	// it counts still run (and reads the caps again, so raised caps let
	// waiters in without waiting for a release).
	slotCheckEvery = time.Minute
)

// slots is one PreviewSlots run.
type slots struct {
	slotsState
	ready    bool // seeded: acquires may be decided
	checking bool
	kick     workflow.Channel // the main loop looks at the state again
	log      interface{ Info(string, ...any) }
}

// PreviewSlots is the singleton coordinator (ID slotsapi.WorkflowID) that
// counts open previews against PREVIEW_MAX_OPEN and
// PREVIEW_MAX_OPEN_PER_REPO. A PreviewLifecycle asks it for a slot (the
// acquire Update, sent with start) before it creates a machine and frees
// the slot when its machine is deleted; a queued one is signalled
// (slotsapi.SignalGranted) when a slot frees. Visibility counts are
// eventually consistent and would let a burst of pull requests through;
// one workflow deciding in order cannot.
//
// It never leaks a slot: every minute it asks Temporal whether the previews
// it counts still run, and frees the slots of those that are gone
// (terminated, timed out). It reads the caps from the worker's settings
// before every decision, completes when it counts nothing, and continues
// as new with its state when history grows.
func PreviewSlots(ctx workflow.Context, in slotsapi.Input) error {
	s := &slots{log: workflow.GetLogger(ctx), kick: workflow.NewBufferedChannel(ctx, 1)}
	if in.Carry != nil {
		s.State = *in.Carry
	}
	if err := s.setHandlers(ctx); err != nil {
		return err
	}
	if !s.Seeded {
		s.seedFromVisibility(ctx)
	}
	s.ready = true
	return s.run(ctx)
}

// setHandlers sets the state query and the acquire update.
func (s *slots) setHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, slotsapi.QueryState, func() (slotsapi.State, error) { return s.State, nil }); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, slotsapi.UpdateAcquire, s.onAcquire,
		workflow.UpdateHandlerOptions{Validator: validateSlotRequest})
}

// onAcquire is the UpdateAcquire handler: once the slots are seeded, it
// grants a slot or queues the request.
func (s *slots) onAcquire(ctx workflow.Context, req slotsapi.Request) (slotsapi.Answer, error) {
	if err := workflow.Await(ctx, func() bool { return s.ready }); err != nil {
		return slotsapi.Answer{}, err
	}
	s.readCaps(ctx)
	ans, granted := s.acquire(req, workflow.Now(ctx))
	s.grant(ctx, granted)
	s.kick.SendAsync(struct{}{}) // arms the liveness check
	if !ans.Granted {
		s.log.Info("preview queued for a slot", "workflow_id", req.WorkflowID, "position", ans.Position, "reason", ans.Reason)
	}
	return ans, nil
}

// validateSlotRequest rejects a request that does not name its preview.
func validateSlotRequest(req slotsapi.Request) error {
	if req.WorkflowID == "" || req.Owner == "" || req.Repo == "" {
		return temporal.NewNonRetryableApplicationError("a slot request needs the preview's workflow ID, owner and repository",
			slotsapi.ErrTypeInvalidRequest, nil)
	}
	return nil
}

// run is the main loop: releases, liveness checks and kicks, until nothing
// is counted (it completes) or history is long (it continues as new).
func (s *slots) run(ctx workflow.Context) error {
	release := workflow.GetSignalChannel(ctx, slotsapi.SignalRelease)
	checkDone := workflow.NewChannel(ctx)
	var checkTimer workflow.Future
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(release, func(c workflow.ReceiveChannel, _ bool) {
			var id string
			c.Receive(ctx, &id)
			s.onRelease(ctx, id)
		})
		sel.AddReceive(checkDone, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		sel.AddReceive(s.kick, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		if checkTimer == nil && !s.checking && s.counted() > 0 {
			checkTimer = workflow.NewTimerWithOptions(ctx, slotCheckEvery, workflow.TimerOptions{Summary: "check slot holders"})
		}
		if checkTimer != nil {
			sel.AddFuture(checkTimer, func(workflow.Future) {
				checkTimer = nil
				s.startCheck(ctx, checkDone)
			})
		}
		sel.Select(ctx)
		if s.checking || !workflow.AllHandlersFinished(ctx) {
			continue
		}
		if s.counted() == 0 && release.Len() == 0 {
			s.log.Info("no preview holds or waits for a slot: the coordinator completes")
			return nil
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return s.continueAsNew(ctx, release)
		}
	}
}

// counted is how many previews hold or wait for a slot.
func (s *slots) counted() int { return len(s.Holders) + len(s.Queue) }

// continueAsNew applies the releases received and hands the state to a
// fresh run.
func (s *slots) continueAsNew(ctx workflow.Context, release workflow.ReceiveChannel) error {
	for {
		var id string
		if !release.ReceiveAsync(&id) {
			break
		}
		s.release(id)
	}
	carry := s.State
	return workflow.NewContinueAsNewError(ctx, slotsapi.WorkflowName, slotsapi.Input{Carry: &carry})
}

// readCaps takes the caps as the worker has them now; on an error it keeps
// those of the last decision.
func (s *slots) readCaps(ctx workflow.Context) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var caps activities.PreviewCaps
	if err := workflow.ExecuteLocalActivity(lctx, previewActs.PreviewCaps).Get(ctx, &caps); err != nil {
		workflow.GetLogger(ctx).Warn("preview caps not read; keeping the last ones", "error", err)
		return
	}
	s.Caps = caps.Slots
}

// seedFromVisibility counts the previews that have a machine but hold no
// slot: those made before the caps (or the coordinator) existed. It runs
// once per coordinator lifetime; a failure counts nothing (they are
// grandfathered) rather than hold every request up.
func (s *slots) seedFromVisibility(ctx workflow.Context) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary: "count open previews", StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 3},
	})
	var found []slotsapi.Holder
	if err := workflow.ExecuteActivity(actx, slotActs.ListPreviewsWithMachines).Get(ctx, &found); err != nil {
		workflow.GetLogger(ctx).Warn("open previews not counted; they are not held against the caps", "error", err)
	}
	s.seed(found)
	s.log.Info("preview slots seeded", "previews_with_machines", len(found))
}

// onRelease frees a slot or place and gives free slots to waiters.
func (s *slots) onRelease(ctx workflow.Context, id string) {
	if !s.release(id) {
		return
	}
	s.readCaps(ctx)
	s.grant(ctx, s.dispatch(workflow.Now(ctx)))
}

// grant tells new holders they hold a slot. A holder that cannot be told
// (its workflow is gone) gives its slot back at once.
func (s *slots) grant(ctx workflow.Context, granted []slotsapi.Holder) {
	for _, h := range granted {
		ans := s.answer(h.WorkflowID, h.Repo)
		s.log.Info("preview slot granted", "workflow_id", h.WorkflowID, "open", ans.Open)
		f := workflow.SignalExternalWorkflow(ctx, h.WorkflowID, "", slotsapi.SignalGranted, ans)
		workflow.Go(ctx, func(gctx workflow.Context) {
			if err := f.Get(gctx, nil); err != nil {
				workflow.GetLogger(gctx).Warn("slot holder not told; its slot is freed", "workflow_id", h.WorkflowID, "error", err)
				s.onRelease(gctx, h.WorkflowID)
			}
		})
	}
}

// startCheck asks which counted previews are gone, frees their slots and
// places, and reads the caps again (raised caps let waiters in).
func (s *slots) startCheck(ctx workflow.Context, done workflow.Channel) {
	in := slotsapi.CheckInput{Holders: append([]slotsapi.Holder(nil), s.Holders...)}
	for _, w := range s.Queue {
		in.Waiters = append(in.Waiters, w.WorkflowID)
	}
	s.checking = true
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("check %d slot holders and %d waiters", len(in.Holders), len(in.Waiters)),
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 3},
	})
	f := workflow.ExecuteActivity(actx, slotActs.CheckSlotHolders, in)
	workflow.Go(ctx, func(gctx workflow.Context) {
		defer done.Send(gctx, struct{}{})
		defer func() { s.checking = false }()
		var res slotsapi.CheckResult
		if err := f.Get(gctx, &res); err != nil {
			workflow.GetLogger(gctx).Warn("slot holder check failed; next time", "error", err)
			return
		}
		for _, id := range res.Gone {
			if s.release(id) {
				s.log.Info("slot of a preview that is gone reclaimed", "workflow_id", id)
			}
		}
		s.readCaps(gctx)
		s.grant(gctx, s.dispatch(workflow.Now(gctx)))
	})
}
