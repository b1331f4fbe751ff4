package main

import (
	"context"
	"time"
)

// The synchronize burst measures a signal's latency with N previews open.
// Right after the last of N previews became ready, the dev server is still
// working off the opening (history and visibility writes, timers of the
// last previews, its garbage collector over a heap that grew with N): a
// burst sent then measures the opening's tail, and its p99 went up and
// down between points (3.56× at 5,000, 2.47× at 10,000 in one run). Every
// burst, the baseline's included, now starts once the stack is quiet.
const (
	quietWindow = 2 * time.Second
	// quietShare is the share of one core, per window, under which the
	// dev server and the worker count as idle.
	quietShare = 0.10
	// quietMost bounds the wait: a stack that never gets quiet is
	// measured as it is (and the log says so).
	quietMost = 3 * time.Minute
)

// quiesce waits until the dev server and the worker have each used under
// quietShare of a core for two windows in a row, or quietMost passed, and
// returns how long that took.
func (s *scaleRun) quiesce(ctx context.Context, tag string) time.Duration {
	began := time.Now()
	limit := time.Duration(quietShare * float64(quietWindow))
	prev, streak := s.cpu(), 0
	for time.Since(began) < quietMost && streak < 2 {
		select {
		case <-ctx.Done():
			return time.Since(began)
		case <-time.After(quietWindow):
		}
		now := s.cpu()
		temporal, worker := now[0]-prev[0], now[1]-prev[1]
		prev = now
		if temporal < limit && worker < limit {
			streak++
		} else {
			streak = 0
		}
		s.e.Log.Debug("quieting down", "burst", tag, "temporal_cpu", temporal, "worker_cpu", worker, "window", quietWindow)
	}
	took := time.Since(began).Round(time.Second)
	s.e.Log.Info("quiet before the burst", "burst", tag, "waited", took, "quiet", streak >= 2)
	return took
}
