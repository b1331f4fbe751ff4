package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/pools"
)

// PoolSettings is what a RunnerJob needs of its pool's configuration. It is
// read through a local activity, so it is recorded in history and replays
// deterministically even if the configuration changes meanwhile.
type PoolSettings struct {
	Mode          string
	PickupTimeout time.Duration
	MaxAttempts   int
}

// PoolSettings returns a pool's job settings, with defaults filled.
func (a *Runners) PoolSettings(_ context.Context, pool string) (PoolSettings, error) {
	var p *pools.Pool
	if a.Pools != nil {
		p = a.Pools.Get(pool)
	}
	if p == nil {
		return PoolSettings{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown runner pool %q", pool), ErrTypeInvalidArgument, nil)
	}
	s := PoolSettings{Mode: p.Mode, PickupTimeout: p.PickupTimeout.D(), MaxAttempts: p.MaxAttempts}
	if s.Mode == "" {
		s.Mode = pools.ModeJIT
	}
	if s.PickupTimeout <= 0 {
		s.PickupTimeout = pools.DefaultPickupTimeout
	}
	if s.MaxAttempts <= 0 {
		s.MaxAttempts = pools.DefaultMaxAttempts
	}
	return s, nil
}
