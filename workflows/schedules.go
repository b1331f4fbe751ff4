package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// RunnerPrewarmName is the workflow a pre-warm Schedule starts: it asks the
// pool to wake idle machines ahead of a known peak.
const RunnerPrewarmName = "RunnerPrewarm"

// RunnerPrewarm signals a pool to wake count idle machines. A pool that is
// not running has nothing to wake.
func RunnerPrewarm(ctx workflow.Context, pool string, count int) error {
	err := workflow.SignalExternalWorkflow(ctx, runnerapi.PoolWorkflowID(pool), "", runnerapi.SignalPrewarm,
		runnerapi.PrewarmRequest{Count: count}).Get(ctx, nil)
	var unknown *temporal.UnknownExternalWorkflowExecutionError
	if errors.As(err, &unknown) {
		workflow.GetLogger(ctx).Info("pool not running; nothing to pre-warm", "pool", pool)
		return nil
	}
	return err
}

// KeepaliveCron wakes every idle machine of a persistent-mode pool weekly,
// so its runner can self-update and GitHub does not remove it as offline
// (it does after 14 days).
const KeepaliveCron = "17 3 * * 1"

// PoolSchedule is one Temporal Schedule Drydock keeps for a pool.
type PoolSchedule struct {
	ID    string
	Cron  string
	Count int
}

// PoolSchedules lists the schedules a pool's configuration asks for: one
// per pre-warm entry, plus the weekly keepalive in persistent mode.
func PoolSchedules(p pools.Pool) []PoolSchedule {
	var out []PoolSchedule
	for i, pw := range p.Prewarm {
		out = append(out, PoolSchedule{ID: fmt.Sprintf("runner-prewarm:%s:%d", p.Name, i), Cron: pw.Cron, Count: pw.Count})
	}
	if p.Mode == pools.ModePersistent {
		max := p.MaxMachines
		if max <= 0 {
			max = pools.DefaultMaxMachines
		}
		out = append(out, PoolSchedule{ID: "runner-keepalive:" + p.Name, Cron: KeepaliveCron, Count: max})
	}
	return out
}

// EnsurePoolSchedules creates or updates the pre-warm and keepalive
// Schedules of every pool, and deletes Drydock's pool schedules that the
// configuration no longer asks for. Schedules (not cron workflows) make the
// runs visible, pausable and backfillable in the Temporal UI.
func EnsurePoolSchedules(ctx context.Context, c client.Client, cfg *pools.Config) error {
	sc := c.ScheduleClient()
	want := map[string]bool{}
	for _, p := range cfg.Pools {
		for _, s := range PoolSchedules(p) {
			want[s.ID] = true
			if err := ensureSchedule(ctx, sc, s, p.Name); err != nil {
				return fmt.Errorf("schedule %s: %w", s.ID, err)
			}
		}
	}
	it, err := sc.List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return fmt.Errorf("list schedules: %w", err)
	}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return fmt.Errorf("list schedules: %w", err)
		}
		if (strings.HasPrefix(e.ID, "runner-prewarm:") || strings.HasPrefix(e.ID, "runner-keepalive:")) && !want[e.ID] {
			// The list comes from visibility, which may still show a
			// schedule just deleted (by another worker starting, or by a
			// previous call): not found is the state wanted.
			var notFound *serviceerror.NotFound
			if err := sc.GetHandle(ctx, e.ID).Delete(ctx); err != nil && !errors.As(err, &notFound) {
				return fmt.Errorf("delete schedule %s: %w", e.ID, err)
			}
		}
	}
	return nil
}

func ensureSchedule(ctx context.Context, sc client.ScheduleClient, s PoolSchedule, pool string) error {
	action := &client.ScheduleWorkflowAction{
		ID:        s.ID + ":run",
		Workflow:  RunnerPrewarmName,
		Args:      []any{pool, s.Count},
		TaskQueue: TaskQueue,
		// A pre-warm that cannot run within a few minutes is pointless.
		WorkflowRunTimeout: 5 * time.Minute,
	}
	spec := client.ScheduleSpec{CronExpressions: []string{s.Cron}}
	_, err := sc.Create(ctx, client.ScheduleOptions{ID: s.ID, Spec: spec, Action: action, Overlap: 0})
	var exists *serviceerror.AlreadyExists
	if err == nil || !(errors.As(err, &exists) || errors.Is(err, temporal.ErrScheduleAlreadyRunning)) {
		return err
	}
	return sc.GetHandle(ctx, s.ID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			in.Description.Schedule.Spec = &spec
			in.Description.Schedule.Action = action
			return &client.ScheduleUpdate{Schedule: &in.Description.Schedule}, nil
		},
	})
}
