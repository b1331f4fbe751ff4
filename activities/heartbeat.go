package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// defaultHeartbeatEvery is how often the GitHub and preview activities
// heartbeat while a call runs: the workflows give them a 10s heartbeat
// timeout, so a dead worker's call is retried elsewhere within seconds.
const defaultHeartbeatEvery = 2 * time.Second

// heartbeatDuring heartbeats every interval (default defaultHeartbeatEvery)
// with details until stop is called or ctx is done, so an activity that
// waits on one long call (GitHub, a file, Dedalus) shows it is alive and
// learns of its cancellation. stop returns once the heartbeats have stopped.
// Outside an activity (a direct call in a test) it does nothing.
func heartbeatDuring(ctx context.Context, every time.Duration, details ...any) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	if every <= 0 {
		every = defaultHeartbeatEvery
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, details...)
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}
