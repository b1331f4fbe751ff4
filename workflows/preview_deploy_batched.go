package workflows

import (
	"errors"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/previewspec"
)

// deployBatchedVersion guards a deploy with fewer Temporal round trips: a
// push used to cost about ten activities, each an activity task and a
// workflow task on the server. Since this version:
//   - the deployment's start and the "deploying" comment are one activity
//     (DeployReport), and so are the "success" status and the "ready"
//     comment;
//   - the spec is validated in a local activity, on the workflow task that
//     has its text;
//   - the commands that need no decision between them run in one activity
//     (RunCommands): a redeploy's checkout, build and start are one, and a
//     first deploy cuts after the setup and after the seed, so that what ran
//     once per machine is recorded as run.
//
// A redeploy of a spec with one build step thus takes six activities where
// it took eleven.
const deployBatchedVersion = "preview-deploy-batched"

// announceDeploy starts the GitHub deployment of ev's head and comments
// that the preview is deploying, in one activity.
func (p *preview) announceDeploy(ctx workflow.Context, ev PullRequestEvent, r gh.Report) {
	p.awaitAwakeReport(ctx)
	res := p.deployReport(ctx, "start GitHub deployment; comment on PR: deploying", activities.DeployReportInput{
		Start: &activities.DeploymentInput{
			Owner: ev.Owner, Repo: ev.Repo, Number: ev.Number, InstallationID: ev.InstallationID,
			SHA: ev.HeadSHA, Environment: activities.PreviewEnvironment(ev.Number),
		},
		Comment: ptr(p.comment(ctx, r)),
	})
	// A deployment that could not be started is none: the success status
	// must not go to the deployment of an earlier push.
	p.DeploymentID = res.DeploymentID
}

// announceReady marks the deployment a success and comments that the
// preview is ready, in one activity.
func (p *preview) announceReady(ctx workflow.Context, ev PullRequestEvent, r gh.Report) {
	p.awaitAwakeReport(ctx)
	in := activities.DeployReportInput{Comment: ptr(p.comment(ctx, r))}
	summary := "comment on PR: ready"
	if p.DeploymentID != 0 {
		in.Status = ptr(p.deploymentStatus("success", "preview ready at "+shortSHA(ev.HeadSHA)))
		summary = "deployment success; " + summary
	}
	p.deployReport(ctx, summary, in)
}

// deployReport runs a DeployReport. It is best effort, like every report:
// what GitHub refused is logged, and the deploy goes on.
func (p *preview) deployReport(ctx workflow.Context, summary string, in activities.DeployReportInput) activities.DeployReportResult {
	var res activities.DeployReportResult
	actx := workflow.WithStartToCloseTimeout(reportCtx(ctx, summary), time.Minute) // up to three GitHub calls per part
	if err := workflow.ExecuteActivity(actx, githubActs.DeployReport, in).Get(ctx, &res); err != nil {
		workflow.GetLogger(ctx).Warn("GitHub not told", "what", summary, "error", err)
		return activities.DeployReportResult{}
	}
	for _, f := range res.Failed {
		workflow.GetLogger(ctx).Warn("GitHub not told", "what", f)
	}
	return res
}

// awaitAwakeReport waits for a wake's refresh of the PR comment, if one is
// in flight, so the comment ends with the newest state.
func (p *preview) awaitAwakeReport(ctx workflow.Context) {
	if p.awakeReporting {
		_ = workflow.Await(ctx, func() bool { return !p.awakeReporting })
	}
}

// loadSpecCtx runs LoadSpec as a local activity: it only parses the text the
// workflow task already has (or the worker's default spec file).
func loadSpecCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
}

// commandGroup is commands run in one RunCommands activity, and what is done
// once they all ran.
type commandGroup struct {
	cmds            []activities.Command
	setupIn, seedIn bool // the setup, the seed ran once this group did
}

// deployGroups is the spec's commands for this deploy, in order: checkout,
// setup (once per machine), build, seed (once per machine), start. A group
// ends after the setup and after the seed when they run, so that their
// success is recorded before what follows.
func deployGroups(ev PullRequestEvent, spec previewspec.Spec, setupDone, seedDone bool) []commandGroup {
	var groups []commandGroup
	cur := commandGroup{cmds: []activities.Command{{Name: "checkout " + shortSHA(ev.HeadSHA), Argv: checkoutArgv(), Timeout: 10 * time.Minute}}}
	phase := func(kind string, steps []previewspec.Step, mark *bool) {
		cur.cmds = append(cur.cmds, stepCommands(kind, steps)...)
		*mark = true
		if len(steps) > 0 {
			groups, cur = append(groups, cur), commandGroup{}
		}
	}
	if !setupDone {
		phase("setup", spec.Setup, &cur.setupIn)
	}
	cur.cmds = append(cur.cmds, stepCommands("build", spec.Build)...)
	if !seedDone {
		phase("seed", spec.Seed, &cur.seedIn)
	}
	cur.cmds = append(cur.cmds, activities.Command{Name: "start app", Argv: startArgv(spec.Start), Timeout: time.Minute})
	return append(groups, cur)
}

func stepCommands(kind string, steps []previewspec.Step) []activities.Command {
	var out []activities.Command
	for i, st := range steps {
		out = append(out, activities.Command{Name: stepName(kind, i, st), Argv: stepArgv(st), Timeout: st.Timeout.D()})
	}
	return out
}

// runSpecBatched runs the deploy's command groups (deployGroups), one
// RunCommands activity each.
func (p *preview) runSpecBatched(ctx workflow.Context, ev PullRequestEvent, spec previewspec.Spec) error {
	env := deployEnv(ev, spec)
	for _, g := range deployGroups(ev, spec, p.SetupDone, p.SeedDone) {
		if err := p.runGroup(ctx, env, g.cmds); err != nil {
			return err
		}
		p.SetupDone = p.SetupDone || g.setupIn
		p.SeedDone = p.SeedDone || g.seedIn
	}
	return nil
}

// runGroup runs cmds in one activity. The failed step the PR is told of is
// the command that failed, or the group's when no one command did.
func (p *preview) runGroup(ctx workflow.Context, env map[string]string, cmds []activities.Command) error {
	names := make([]string, len(cmds))
	timeout := time.Minute
	for i, c := range cmds {
		names[i] = c.Name
		timeout += c.Timeout
	}
	p.step = strings.Join(names, ", ")
	err := workflow.ExecuteActivity(withActivity(ctx, truncate(strings.Join(names, " → "), 200), timeout), machineActs.RunCommands,
		activities.CommandsInput{MachineID: p.Status.MachineID, Env: env, Commands: cmds}).Get(ctx, nil)
	if name := failedCommand(err); name != "" {
		p.step = name
	}
	return err
}

// failedCommand is the name of the command a CommandFailed error names.
func failedCommand(err error) string {
	var ae *temporal.ApplicationError
	var res activities.CommandResult
	if errors.As(err, &ae) && ae.Type() == activities.ErrTypeCommandFailed && ae.HasDetails() && ae.Details(&res) == nil {
		return res.Name
	}
	return ""
}
