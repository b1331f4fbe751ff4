package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
)

// ReconcileName is the reconciler workflow; ReconcileScheduleID runs it periodically.
const (
	ReconcileName       = "Reconcile"
	ReconcileScheduleID = "drydock-reconcile"
)

var reconcilerActs *activities.Reconciler

// Reconcile deletes machines nothing owns and runners nothing backs, and
// returns what it did (visible as the run's result in the Temporal UI).
func Reconcile(ctx workflow.Context) (activities.ReconcileResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             "find and delete unowned machines and runners",
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 10 * time.Second, MaximumAttempts: 3},
	})
	var res activities.ReconcileResult
	err := workflow.ExecuteActivity(ctx, reconcilerActs.Reconcile).Get(ctx, &res)
	return res, err
}

// EnsureReconcileSchedule creates or updates the schedule that runs the
// reconciler every interval (0 deletes it).
func EnsureReconcileSchedule(ctx context.Context, c client.Client, every time.Duration) error {
	sc := c.ScheduleClient()
	h := sc.GetHandle(ctx, ReconcileScheduleID)
	if every <= 0 {
		err := h.Delete(ctx)
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: every}}}
	action := &client.ScheduleWorkflowAction{ID: ReconcileScheduleID + ":run", Workflow: ReconcileName, TaskQueue: TaskQueue, WorkflowRunTimeout: time.Hour}
	_, err := sc.Create(ctx, client.ScheduleOptions{ID: ReconcileScheduleID, Spec: spec, Action: action})
	var exists *serviceerror.AlreadyExists
	if err == nil || !(errors.As(err, &exists) || errors.Is(err, temporal.ErrScheduleAlreadyRunning)) {
		if err != nil {
			return fmt.Errorf("create schedule %s: %w", ReconcileScheduleID, err)
		}
		return nil
	}
	return h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
		in.Description.Schedule.Spec = &spec
		in.Description.Schedule.Action = action
		return &client.ScheduleUpdate{Schedule: &in.Description.Schedule}, nil
	}})
}
