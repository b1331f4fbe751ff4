package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"

	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows"
)

// syncSent is one synchronize delivery: to which workflow, when it was sent.
type syncSent struct {
	wid, delivery string
	sent          time.Time
	ok            bool
}

// syncResult is one synchronize burst: each handled delivery's time from
// sending to the first workflow task completed after its signal, how many
// were refused or never handled, where the time went, and the CPU the
// stack used meanwhile.
type syncResult struct {
	lat *harness.Samples
	bad int
	// bare and bareBad are the same for the floor's bare signals.
	bare    *harness.Samples
	bareBad int
	stages  *syncStages
	cpu     burstCPU
}

// syncBurst sends count synchronize deliveries (each a new head for a
// preview among 1..upTo, taken in a random order, round-robin) at scaleSyncRate and measures, for each,
// the time from sending it to the completion of the first workflow task
// after its signal in the workflow's history.
func (s *scaleRun) syncBurst(ctx context.Context, tag string, upTo, count int) (*syncResult, error) {
	ps, err := s.prepareSyncs(tag, upTo, count)
	if err != nil {
		return nil, err
	}
	s.quiet = s.quiesce(ctx, tag)
	cpu0 := s.burstCPU()
	sent, bare, err := s.sendSyncs(ctx, tag, ps)
	if err != nil {
		return nil, err
	}
	refused := notSent(sent)
	handled, err := s.awaitHandled(ctx, append(slices.Clone(sent), bare...))
	if err != nil {
		return nil, err
	}
	r := &syncResult{cpu: s.burstCPU().since(cpu0)}
	r.lat, r.bad = syncLatencies(sent, handled, refused)
	r.bare, r.bareBad = syncLatencies(bare, handled, notSent(bare))
	if r.lat.Len() == 0 {
		return nil, fmt.Errorf("no synchronize delivery was handled (%d refused)", refused)
	}
	r.stages = stagesOf(sent, handled)
	s.e.Log.Info("synchronize burst", append([]any{"previews_open", upTo, "deliveries", count, "p50", r.lat.Quantile(0.5),
		"p99", r.lat.Quantile(0.99), "bad", r.bad,
		"bare_p50", r.bare.Quantile(0.5), "bare_p99", r.bare.Quantile(0.99), "bare_bad", r.bareBad}, append(r.stages.logFields(), r.cpu.logFields()...)...)...)
	return r, nil
}

// syncPrepared is a synchronize delivery ready to send: its workflow, its
// delivery ID and its body.
type syncPrepared struct {
	wid, id string
	body    []byte
}

// prepareSyncs builds count synchronize deliveries, each a new head for a
// preview among 1..upTo (those not lost to a port race), taken in a random
// order, round-robin.
func (s *scaleRun) prepareSyncs(tag string, upTo, count int) ([]syncPrepared, error) {
	ps := make([]syncPrepared, count)
	var order []int
	for _, i := range s.rnd.Perm(upTo) {
		if !s.raced[i+1] {
			order = append(order, i+1)
		}
	}
	for i := range ps {
		num := order[i%len(order)]
		if s.head[num]+1 >= len(s.shas) {
			return nil, fmt.Errorf("preview %d has had all %d commits", num, len(s.shas))
		}
		s.head[num]++
		body, err := s.h.PullRequest("synchronize", s.pr(num))
		if err != nil {
			return nil, err
		}
		owner, _ := scaleOwnerOf(num)
		ps[i] = syncPrepared{wid: workflows.PreviewWorkflowID(owner, scaleRepo, num), id: fmt.Sprintf("scale-sync-%s-%d", tag, i), body: body}
	}
	return ps, nil
}

// sendSyncs sends the prepared deliveries at scaleSyncRate, each in its
// own goroutine, and halfway between each two a bare workflow's signal
// (the floor, scale_bare.go); it returns when each was sent and whether
// it was accepted.
func (s *scaleRun) sendSyncs(ctx context.Context, tag string, ps []syncPrepared) (sent, bare []syncSent, err error) {
	sent, bare = make([]syncSent, len(ps)), make([]syncSent, len(ps))
	var wg sync.WaitGroup
	interval := time.Second / scaleSyncRate
	start := time.Now()
	for i, p := range ps {
		if err := sleepUntil(ctx, start.Add(time.Duration(i)*interval)); err != nil {
			return nil, nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := time.Now()
			code, err := s.h.Deliver(ctx, "pull_request", p.id, p.body)
			ok := err == nil && code == http.StatusAccepted
			sent[i] = syncSent{wid: p.wid, delivery: p.id, sent: at, ok: ok}
		}()
		if err := sleepUntil(ctx, start.Add(time.Duration(i)*interval+interval/2)); err != nil {
			return nil, nil, err
		}
		s.bare.signal(ctx, &wg, tag, i, &bare[i])
	}
	wg.Wait()
	return sent, bare, nil
}

// sleepUntil waits until t, or ctx is done.
func sleepUntil(ctx context.Context, t time.Time) error {
	wait := time.Until(t)
	if wait <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}

// awaitHandled reads the handling times of the accepted deliveries from
// the histories; a signal may still be waiting for its workflow task, so
// it looks again for a while. It returns delivery ID → where its signal
// was in the history.
func (s *scaleRun) awaitHandled(ctx context.Context, sent []syncSent) (map[string]syncHandled, error) {
	handled := map[string]syncHandled{}
	for deadline := time.Now().Add(time.Minute); ; {
		for wid := range syncMissing(sent, handled) {
			if err := s.handledTimes(ctx, wid, handled); err != nil {
				return nil, err
			}
		}
		if len(syncMissing(sent, handled)) == 0 || time.Now().After(deadline) {
			return handled, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// notSent counts the deliveries refused or signals that could not be sent.
func notSent(sent []syncSent) int64 {
	var n int64
	for _, x := range sent {
		if !x.ok {
			n++
		}
	}
	return n
}

// syncMissing is the set of workflows with an accepted delivery not yet
// handled.
func syncMissing(sent []syncSent, handled map[string]syncHandled) map[string]bool {
	m := map[string]bool{}
	for _, x := range sent {
		if _, done := handled[x.delivery]; x.ok && !done {
			m[x.wid] = true
		}
	}
	return m
}

// syncLatencies is the time from sending to handling of each handled
// delivery, and how many were refused or never handled.
func syncLatencies(sent []syncSent, handled map[string]syncHandled, refused int64) (*harness.Samples, int) {
	var lat harness.Samples
	bad := int(refused)
	for _, x := range sent {
		h, done := handled[x.delivery]
		switch {
		case !x.ok:
		case !done:
			bad++
		default:
			lat.Add(h.done.Sub(x.sent))
		}
	}
	return &lat, bad
}

// handledTimes reads workflow wid's history and records, for each
// pull_request signal of a synchronize delivery, when the signal was
// recorded and when the first workflow task after it started and
// completed.
func (s *scaleRun) handledTimes(ctx context.Context, wid string, handled map[string]syncHandled) error {
	var r historyReader
	it := s.h.TC.GetWorkflowHistory(ctx, wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return fmt.Errorf("history of %s: %w", wid, err)
		}
		if err := r.event(ev, handled); err != nil {
			return fmt.Errorf("history of %s: %w", wid, err)
		}
	}
	return nil
}

// historyReader follows one history's signals to the workflow task that
// handled them.
type historyReader struct {
	pending []pendingSignal // signaled, their task not completed yet
	sticky  bool            // the last workflow task scheduled was on a sticky queue
}

// pendingSignal is a delivery's signal on its way to the task handling it.
type pendingSignal struct {
	delivery string
	at       syncHandled
}

func (r *historyReader) event(ev *historypb.HistoryEvent, handled map[string]syncHandled) error {
	t := ev.GetEventTime().AsTime()
	switch ev.GetEventType() {
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
		a := ev.GetWorkflowExecutionSignaledEventAttributes()
		if a.GetSignalName() != workflows.SignalPullRequest {
			return nil
		}
		var pe workflows.PullRequestEvent
		if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &pe); err != nil {
			return fmt.Errorf("signal input: %w", err)
		}
		r.pending = append(r.pending, pendingSignal{delivery: pe.DeliveryID, at: syncHandled{signaled: t}})
	case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
		r.sticky = ev.GetWorkflowTaskScheduledEventAttributes().GetTaskQueue().GetKind() == enumspb.TASK_QUEUE_KIND_STICKY
	case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
		for i := range r.pending {
			r.pending[i].at.started, r.pending[i].at.sticky = t, r.sticky
		}
	case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
		for _, p := range r.pending {
			p.at.done = t
			handled[p.delivery] = p.at
		}
		r.pending = r.pending[:0]
	}
	return nil
}
