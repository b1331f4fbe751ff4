package router

// The router's cold path: one wake in flight per preview, shared by every
// request that waits for it, and the touches that report traffic.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// errWakeWait is a request that waited WakeTimeout for its preview.
var errWakeWait = fmt.Errorf("%w: the preview did not wake within the wake timeout", ErrUnavailable)

// wake returns p's upstream once p is awake: it joins the wake in flight for
// p or starts one, and waits up to WakeTimeout for it.
func (rt *Router) wake(ctx context.Context, p *preview) (*upstream, error) {
	if err := p.negative(rt.clock()); err != nil {
		return nil, err
	}
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	ch := rt.flights.DoChan(p.id, func() (any, error) { return rt.doWake(p) })
	timer := time.NewTimer(rt.wakeTimeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*upstream), nil
	case <-timer.C:
		return nil, errWakeWait
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// wakeInBackground starts (or joins) a wake nobody waits for, so that the
// client's retry of a request the router could not retry finds it awake.
func (rt *Router) wakeInBackground(p *preview) {
	rt.flights.DoChan(p.id, func() (any, error) { return rt.doWake(p) })
}

// doWake is the one wake in flight for p. It runs detached from the
// requests waiting on it, so a client that goes away does not cancel the
// wake for the others, and it may outlive their wait: a retry then finds the
// preview warm.
func (rt *Router) doWake(p *preview) (any, error) {
	defer p.claimed.Store(0) // the next request for a cold preview pays again
	now := rt.clock()
	// A request that saw the preview cold just before the previous wake
	// finished starts a new flight; it needs no second wake.
	if u := p.warm(now); u != nil {
		return u, nil
	}
	if err := p.negative(now); err != nil {
		return nil, err
	}
	if !rt.acquireWake() {
		rt.log.Debug("preview wake refused: too many wakes in flight", "workflow_id", p.id)
		return nil, errWakeCap
	}
	defer rt.releaseWake()
	p.waking.Add(1)
	defer p.waking.Add(-1)
	ctx, cancel := context.WithTimeout(rt.ctx, rt.flightLimit)
	defer cancel()
	start := time.Now()
	res, err := rt.waker.Wake(ctx, p.id)
	latency := time.Since(start)
	rt.metrics.Wake(wakeResult(err), latency)
	if err != nil {
		switch {
		case errors.Is(err, ErrUnknownPreview), errors.Is(err, ErrPreviewGone):
			p.setNegative(rt.clock()+int64(negativeTTL), err)
			rt.log.Info("preview wake refused", "workflow_id", p.id, "latency", latency, "err", err)
		default:
			rt.log.Warn("preview wake failed", "workflow_id", p.id, "latency", latency, "err", err)
		}
		return nil, err
	}
	u, err := rt.upstreamFor(p, res.URL)
	if err != nil {
		rt.log.Warn("preview wake failed", "workflow_id", p.id, "latency", latency, "err", err)
		return nil, err
	}
	now = rt.clock()
	p.wokenAt.Store(now)
	p.awakeUntil.Store(now + rt.awakeTTL)
	rt.log.Info("preview woken", "workflow_id", p.id, "machine_id", res.MachineID, "latency", latency)
	return u, nil
}

// wakeResult names a wake's outcome for drydock_router_wakes_total.
func wakeResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUnknownPreview):
		return "unknown"
	case errors.Is(err, ErrPreviewGone):
		return "gone"
	case errors.Is(err, ErrNotReady):
		return "not_ready" // still deploying: answered as designed, not a failure
	}
	return "error"
}

// touch queues a Touch of p unless one was queued within TouchEvery. It
// never blocks: when the queue is full the touch is left to a later request.
func (rt *Router) touch(p *preview, now int64) {
	last := p.lastTouch.Load()
	if last != 0 && now-last < rt.touchEvery {
		return
	}
	if !p.lastTouch.CompareAndSwap(last, now) {
		return // another request is touching it
	}
	select {
	case rt.touchq <- p:
	default:
		p.lastTouch.CompareAndSwap(now, last)
	}
}

func (rt *Router) touchLoop() {
	defer rt.wg.Done()
	for {
		select {
		case <-rt.ctx.Done():
			return
		case p := <-rt.touchq:
			ctx, cancel := context.WithTimeout(rt.ctx, touchTimeout)
			if err := rt.waker.Touch(ctx, p.id); err != nil && rt.ctx.Err() == nil {
				rt.log.Warn("preview touch failed", "workflow_id", p.id, "err", err)
			}
			cancel()
		}
	}
}
