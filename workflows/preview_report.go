package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/gh"
)

// What a preview tells GitHub: the deployment and its statuses, the PR
// comment (with the awake time), and the report of a failed deploy.

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
	err := workflow.ExecuteActivity(reportCtx(ctx, "deployment "+state), githubActs.SetDeploymentStatus,
		p.deploymentStatus(state, description)).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("GitHub deployment status not set", "state", state, "error", err)
	}
}

// deploymentStatus is the status state of the preview's deployment.
func (p *preview) deploymentStatus(state, description string) activities.DeploymentStatusInput {
	url := ""
	if state == "success" {
		url = p.settings.PublicURL
	}
	return activities.DeploymentStatusInput{
		Owner: p.Status.Owner, Repo: p.Status.Repo, InstallationID: p.Event.InstallationID,
		DeploymentID: p.DeploymentID, State: state, EnvironmentURL: url, Description: description,
	}
}

// report updates the PR comment, after a wake's refresh of it (if one is in
// flight). Reporting is best effort: GitHub being down must not fail or
// block a preview.
func (p *preview) report(ctx workflow.Context, r gh.Report) {
	p.awaitAwakeReport(ctx)
	p.sendReport(ctx, r)
}

// sendReport writes the PR comment, with the awake time so far.
func (p *preview) sendReport(ctx workflow.Context, r gh.Report) {
	err := workflow.ExecuteActivity(reportCtx(ctx, "comment on PR: "+r.State), githubActs.ReportOnPR, p.comment(ctx, r)).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("PR comment not updated", "state", r.State, "error", err)
	}
}

// comment is the PR comment showing r, with the awake time so far; the
// preview notes when it reported.
func (p *preview) comment(ctx workflow.Context, r gh.Report) activities.CommentInput {
	now := workflow.Now(ctx)
	r.UpdatedAt = now
	r.AwakeFor = p.Awake.SoFar(now)
	p.ReportedAt = now
	return activities.CommentInput{
		Owner: p.Status.Owner, Repo: p.Status.Repo, Number: p.Status.Number, InstallationID: p.Event.InstallationID, Report: r,
	}
}

func reportCtx(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
	})
}
