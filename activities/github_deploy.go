package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// DeployReportInput is what a deploy tells GitHub at one of its turns, in
// one activity instead of one per call: the start of a deployment (and its
// in_progress status), a status of the deployment started earlier, and the
// PR comment. Each part is optional; the parts run in that order.
type DeployReportInput struct {
	Start   *DeploymentInput       `json:",omitempty"`
	Status  *DeploymentStatusInput `json:",omitempty"`
	Comment *CommentInput          `json:",omitempty"`
}

// DeployReportResult is what came of a DeployReport.
type DeployReportResult struct {
	// DeploymentID is the deployment Start found or created (0 if it failed).
	DeploymentID int64 `json:",omitempty"`
	// Skipped: local mode, GitHub was not asked.
	Skipped bool `json:",omitempty"`
	// Failed names the parts that still failed on the last attempt, with
	// their errors. Reporting is best effort: the deploy goes on.
	Failed []string `json:",omitempty"`
}

// DeployReport runs the parts of in (StartDeployment, SetDeploymentStatus,
// ReportOnPR), each whatever the others did. Every part is idempotent (the
// deployment is found again, a repeated status is a no-op, the comment is
// rewritten), so when one fails with a transient error the whole activity
// is retried. On the last attempt the activity succeeds with what it got
// and names the failed parts: the deployment one part created is not lost
// because the comment could not be written, nor the other way round.
func (a *GitHub) DeployReport(ctx context.Context, in DeployReportInput) (DeployReportResult, error) {
	var res DeployReportResult
	var failed []deployPartError
	if in.Start != nil {
		ref, err := a.StartDeployment(ctx, *in.Start)
		res.DeploymentID, res.Skipped = ref.ID, ref.Skipped
		failed = appendPartError(failed, "start the deployment", err)
	}
	if in.Status != nil && in.Status.DeploymentID != 0 {
		failed = appendPartError(failed, "deployment "+in.Status.State, a.SetDeploymentStatus(ctx, *in.Status))
	}
	if in.Comment != nil {
		failed = appendPartError(failed, "comment on the PR", a.ReportOnPR(ctx, *in.Comment))
	}
	if len(failed) == 0 {
		return res, nil
	}
	if ctx.Err() != nil {
		return res, ctx.Err() // cancelled or timed out: Temporal decides
	}
	if retry := firstRetryable(failed); retry != nil && !lastAttempt(ctx) {
		return res, retry // as classifyGitHub made it: its type and retry delay hold
	}
	for _, f := range failed {
		res.Failed = append(res.Failed, f.part+": "+f.err.Error())
		activity.GetLogger(ctx).Warn("GitHub report part failed", "part", f.part, "error", f.err)
	}
	return res, nil
}

type deployPartError struct {
	part string
	err  error
}

func appendPartError(list []deployPartError, part string, err error) []deployPartError {
	if err == nil {
		return list
	}
	return append(list, deployPartError{part: part, err: err})
}

// firstRetryable is the first error a retry may cure, or nil.
func firstRetryable(failed []deployPartError) error {
	for _, f := range failed {
		var ae *temporal.ApplicationError
		if errors.As(f.err, &ae) && ae.NonRetryable() {
			continue
		}
		if ae == nil {
			return fmt.Errorf("%s: %w", f.part, f.err)
		}
		return f.err
	}
	return nil
}

// lastAttempt: the server will not retry this activity again (its retry
// policy's attempts are used up). Unknown (no policy sent, or unlimited
// attempts) is not the last.
func lastAttempt(ctx context.Context) bool {
	info := activity.GetInfo(ctx)
	rp := info.RetryPolicy
	return rp != nil && rp.MaximumAttempts > 0 && info.Attempt >= rp.MaximumAttempts
}
