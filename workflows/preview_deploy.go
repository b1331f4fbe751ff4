package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/previewspec"
)

// deploy brings the preview to ev.HeadSHA: it announces the deploy, reads
// the spec, makes sure there is a machine, runs the spec on it, exposes the
// app and marks the preview ready. Each step's commands are those the
// recorded histories hold, in the same order.
func (p *preview) deploy(ctx workflow.Context, ev PullRequestEvent) error {
	p.batched = workflow.GetVersion(ctx, deployBatchedVersion, workflow.DefaultVersion, 1) == 1
	if proceed, err := p.beginDeploy(ctx, ev); err != nil || !proceed {
		return err
	}
	spec, err := p.loadSpec(ctx, ev)
	if err != nil {
		return err
	}
	p.applySpecVisibility(ctx, spec)
	if err := p.ensureMachine(ctx, ev, spec); err != nil {
		return err
	}
	if err := p.runSpec(ctx, ev, spec); err != nil {
		return err
	}
	if err := p.expose(ctx, spec); err != nil {
		return err
	}
	p.markReady(ctx, ev)
	return nil
}

// beginDeploy announces a deploy on GitHub (deployment, PR comment) and
// sets the phase. Before the first machine it asks GitHub whether the pull
// request is still open: GitHub does not promise delivery order, and an
// opened or synchronize delivery that arrives after closed must not start a
// preview. It returns false (and sets Teardown) when the PR is closed.
func (p *preview) beginDeploy(ctx workflow.Context, ev PullRequestEvent) (bool, error) {
	p.step = "check the pull request"
	first := p.Status.MachineID == ""
	approvalChecked := false
	if ev.ApprovalLabel != "" && workflow.GetVersion(ctx, "preview-fork-approval-pinned", workflow.DefaultVersion, 1) == 1 {
		if ok, err := p.checkApproval(ctx, ev); err != nil || !ok {
			return false, err
		}
		approvalChecked = true
	}
	if first && !approvalChecked && workflow.GetVersion(ctx, "pr-state-before-machine", workflow.DefaultVersion, 1) == 1 {
		var st activities.PullRequestState
		if err := workflow.ExecuteActivity(withActivity(ctx, "check the pull request is open", time.Minute), githubActs.PullRequestState,
			activities.PullRequestRef{Owner: ev.Owner, Repo: ev.Repo, Number: ev.Number, InstallationID: ev.InstallationID},
		).Get(ctx, &st); err != nil {
			return false, err
		}
		if st.Closed() {
			workflow.GetLogger(ctx).Info("pull request already closed on GitHub: no preview", "sha", ev.HeadSHA)
			p.Teardown = "pull request is closed on GitHub (a delivery arrived after the close)"
			return false, nil
		}
	}
	if first {
		p.setPhase(ctx, PreviewProvisioning)
	} else {
		p.setPhase(ctx, PreviewDeploying)
	}
	p.Status.LastError = ""
	deploying := gh.Report{State: "deploying", SHA: ev.HeadSHA, Branch: ev.HeadRef, URL: p.settings.PublicURL}
	if p.batched {
		p.announceDeploy(ctx, ev, deploying)
		return true, nil
	}
	p.startDeployment(ctx, ev)
	p.report(ctx, deploying)
	return true, nil
}

// checkApproval asks GitHub, before a deploy of a pull request that the
// opt-in label admits, whether it is still open and labelled, and for a
// fork whether its head is still the commit the label approved. It returns
// true to deploy; otherwise it sets Teardown (and, for a fork that pushed
// commits nobody approved, takes the label off and says why on the PR). A
// replayed old labeled or synchronize delivery that starts a fresh run thus
// creates nothing: GitHub's answer refuses it.
//
// A fork's delivery whose head is not GitHub's current head is stale (a
// redelivery, or GitHub's own disorder): it neither approves, nor revokes,
// nor tears down; the preview goes back to GitHub's head (see ignoreStale).
func (p *preview) checkApproval(ctx workflow.Context, ev PullRequestEvent) (bool, error) {
	staleAware := workflow.GetVersion(ctx, staleEventVersion, workflow.DefaultVersion, 1) == 1
	var st activities.PullRequestState
	if err := workflow.ExecuteActivity(withActivity(ctx, "check the pull request's state, head and labels", time.Minute), githubActs.PullRequestState,
		activities.PullRequestRef{Owner: ev.Owner, Repo: ev.Repo, Number: ev.Number, InstallationID: ev.InstallationID},
	).Get(ctx, &st); err != nil {
		return false, err
	}
	head := ev.HeadSHA
	if st.Known {
		head = st.HeadSHA
	}
	if staleAware {
		p.settleLabeled(st, ev.ApprovalLabel)
		if staleForkDelivery(st, ev, head) {
			p.ignoreStale(ctx, ev, head)
			return false, nil
		}
	}
	approved := p.ApprovedSHA != "" && p.ApprovedSHA == ev.HeadSHA && p.ApprovedSHA == head
	deploy, revoke, why := approvalVerdict(st, ev, approved)
	if deploy {
		return true, nil
	}
	if revoke {
		p.revokeApproval(ctx, ev, st, head)
	} else {
		p.Teardown = why
	}
	workflow.GetLogger(ctx).Info("no deploy: the pull request's approval does not hold", "sha", ev.HeadSHA, "github_head", head,
		"approved", p.ApprovedSHA, "reason", p.Teardown)
	return false, nil
}

// staleForkDelivery: a fork's delivery whose head is not GitHub's current
// head (head), while the pull request is open and labelled.
func staleForkDelivery(st activities.PullRequestState, ev PullRequestEvent, head string) bool {
	return ev.Fork && st.Known && st.Open && st.HasLabel(ev.ApprovalLabel) && head != "" && head != ev.HeadSHA
}

// approvalVerdict decides from GitHub's answer whether to deploy; if not,
// why (the teardown reason), or revoke: a fork pushed commits nobody
// approved, and the caller takes the label off (revokeApproval).
func approvalVerdict(st activities.PullRequestState, ev PullRequestEvent, approved bool) (deploy, revoke bool, why string) {
	switch {
	case st.Skipped:
		// Local mode: there is no GitHub to ask, the events are all there is.
		if !ev.Fork || approved {
			return true, false, ""
		}
		return false, false, fmt.Sprintf("%s is not the commit the %q label approved", shortSHA(ev.HeadSHA), ev.ApprovalLabel)
	case !st.Known:
		return false, false, "GitHub does not show the pull request: no preview without its approval"
	case !st.Open:
		return false, false, "pull request is closed on GitHub (a delivery arrived after the close)"
	case !st.HasLabel(ev.ApprovalLabel):
		return false, false, fmt.Sprintf("the %q label is not on the pull request", ev.ApprovalLabel)
	case !ev.Fork || approved:
		return true, false, ""
	default:
		return false, true, ""
	}
}

// staleEventVersion guards the handling of stale fork deliveries: a
// labeled delivery approves GitHub's head only if it names it, and a
// delivery whose head is not GitHub's changes nothing.
const staleEventVersion = "preview-fork-stale-event"

// maxLabeledSHAs bounds the labeled heads remembered between two checks.
const maxLabeledSHAs = 16

// noteLabeled remembers the head a labeled delivery named, for the next
// check with GitHub.
func (p *preview) noteLabeled(sha string) {
	if slices.Contains(p.LabeledSHAs, sha) {
		return
	}
	p.LabeledSHAs = appendBounded(p.LabeledSHAs, sha, maxLabeledSHAs)
}

// settleLabeled turns the labeled deliveries received since the last check
// into an approval: of GitHub's current head, if one of them names it and
// the pull request is open and carries the label. The others were stale.
// In local mode (no GitHub to ask) the newest one approves its head.
func (p *preview) settleLabeled(st activities.PullRequestState, label string) {
	labeled := p.LabeledSHAs
	p.LabeledSHAs = nil
	switch {
	case st.Skipped:
		if n := len(labeled); n > 0 {
			p.ApprovedSHA = labeled[n-1]
		}
	case st.Known && st.Open && st.HasLabel(label) && st.HeadSHA != "" && slices.Contains(labeled, st.HeadSHA):
		p.ApprovedSHA = st.HeadSHA
	}
}

// ignoreStale drops a fork's delivery whose head is not GitHub's current
// head: the approval and the label stay as they are, and the preview goes
// back to GitHub's head. That is the head it serves already (nothing to
// deploy), or a newer one, which the next deploy checks like any push.
func (p *preview) ignoreStale(ctx workflow.Context, ev PullRequestEvent, head string) {
	workflow.GetLogger(ctx).Info("stale delivery ignored: its head is not the pull request's head on GitHub",
		"action", ev.Action, "sha", ev.HeadSHA, "github_head", head, "approved", p.ApprovedSHA, "deployed", p.Status.DeployedSHA)
	if p.Event.HeadSHA == ev.HeadSHA { // no newer delivery arrived meanwhile
		p.Event.HeadSHA = head
		p.Status.HeadSHA = head
	}
	if p.redeployAsked {
		p.PendingRedeploy = true
	}
}

// revokeApproval takes the opt-in label off a fork's pull request whose head
// is not the approved commit, and tears the preview down saying why: a
// maintainer approves the new head by adding the label again.
func (p *preview) revokeApproval(ctx workflow.Context, ev PullRequestEvent, st activities.PullRequestState, head string) {
	label := ev.ApprovalLabel
	for _, l := range st.Labels {
		if strings.EqualFold(strings.TrimSpace(l), strings.TrimSpace(label)) {
			label = l // as GitHub spells it
		}
	}
	if err := workflow.ExecuteActivity(reportCtx(ctx, "remove the "+label+" label"), githubActs.RemoveLabel, activities.LabelInput{
		Owner: ev.Owner, Repo: ev.Repo, Number: ev.Number, InstallationID: ev.InstallationID, Label: label,
	}).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("opt-in label not removed", "label", label, "error", err)
	}
	p.approvalRevoked = true
	why := "new commits from a fork"
	if p.ApprovedSHA == "" {
		why = "the fork's commit was not approved in this preview's life (reopened, or an old delivery)"
	}
	p.Teardown = fmt.Sprintf("%s; a maintainer re-adds the %q label to approve %s", why, label, shortSHA(head))
}

// loadSpec reads the preview spec from the PR's base branch (trusted code)
// and validates it; a repository without one gets the server's default.
func (p *preview) loadSpec(ctx workflow.Context, ev PullRequestEvent) (previewspec.Spec, error) {
	p.step = "read the preview spec"
	var fetched activities.FetchSpecResult
	if err := workflow.ExecuteActivity(withActivity(ctx, "read "+previewspec.RepoPath+" from "+ev.BaseRef, time.Minute),
		githubActs.FetchPreviewSpec, activities.FetchSpecInput{
			Owner: ev.Owner, Repo: ev.Repo, Ref: ev.BaseRef, Path: previewspec.RepoPath, InstallationID: ev.InstallationID,
		}).Get(ctx, &fetched); err != nil {
		return previewspec.Spec{}, err
	}
	source := ev.Owner + "/" + ev.Repo + ":" + previewspec.RepoPath + "@" + ev.BaseRef
	var spec previewspec.Spec
	if p.batched {
		err := workflow.ExecuteLocalActivity(loadSpecCtx(ctx), previewActs.LoadSpec,
			activities.LoadSpecInput{Content: fetched.Content, Source: source}).Get(ctx, &spec)
		return spec, err
	}
	err := workflow.ExecuteActivity(withActivity(ctx, "load preview spec", time.Minute), previewActs.LoadSpec,
		activities.LoadSpecInput{Content: fetched.Content, Source: source}).Get(ctx, &spec)
	return spec, err
}

// ensureMachine creates the preview's machine, or wakes the one it has.
func (p *preview) ensureMachine(ctx workflow.Context, ev PullRequestEvent, spec previewspec.Spec) error {
	p.step = "create machine"
	if p.Status.MachineID != "" {
		p.step = "wake machine"
		var m activities.MachineRef
		if err := workflow.ExecuteActivity(withActivity(ctx, "wake machine "+p.Status.MachineID, 5*time.Minute),
			machineActs.WakeMachine, p.Status.MachineID).Get(ctx, &m); err != nil {
			return err
		}
		p.observe(ctx, m)
		return nil
	}
	capped, err := p.admit(ctx, ev, spec) // caps: machine size, slot (preview_slots_lifecycle.go)
	if err != nil {
		return err
	}
	// A newer push or a close must not cancel the create half-way: the
	// machine may exist already, and only the create's result tells the
	// teardown what to delete.
	cctx, _ := workflow.NewDisconnectedContext(ctx)
	m, err := p.createMachine(ctx, cctx, spec, ev, capped)
	if err != nil {
		return err
	}
	p.observe(ctx, m)
	p.Status.MachineID = m.MachineID
	p.setPhase(ctx, p.Status.Phase)
	if ctx.Err() != nil {
		return temporal.NewCanceledError("deploy superseded or cancelled")
	}
	return nil
}

// runSpec checks out the head and runs the spec on the machine: setup and
// seed once per machine, build every time, then (re)starts the app.
func (p *preview) runSpec(ctx workflow.Context, ev PullRequestEvent, spec previewspec.Spec) error {
	if p.batched {
		return p.runSpecBatched(ctx, ev, spec)
	}
	r := specRunner{ctx: ctx, machineID: p.Status.MachineID, env: deployEnv(ev, spec), step: &p.step}
	if err := r.run("checkout "+shortSHA(ev.HeadSHA), checkoutArgv(), 10*time.Minute); err != nil {
		return err
	}
	if !p.SetupDone {
		if err := r.steps("setup", spec.Setup); err != nil {
			return err
		}
		p.SetupDone = true
	}
	if err := r.steps("build", spec.Build); err != nil {
		return err
	}
	if !p.SeedDone {
		if err := r.steps("seed", spec.Seed); err != nil {
			return err
		}
		p.SeedDone = true
	}
	return r.run("start app", startArgv(spec.Start), time.Minute)
}

// specRunner runs a deploy's commands on its machine, with its environment.
type specRunner struct {
	ctx       workflow.Context
	machineID string
	env       map[string]string
	step      *string // set to the running command's name
}

func (r specRunner) run(name string, argv []string, timeout time.Duration) error {
	*r.step = name
	return workflow.ExecuteActivity(withActivity(r.ctx, name, timeout+time.Minute), machineActs.RunCommand, activities.Command{
		MachineID: r.machineID, Name: name, Argv: argv, Env: r.env, Timeout: timeout,
	}).Get(r.ctx, nil)
}

func (r specRunner) steps(kind string, list []previewspec.Step) error {
	for i, st := range list {
		if err := r.run(stepName(kind, i, st), stepArgv(st), st.Timeout.D()); err != nil {
			return err
		}
	}
	return nil
}

// stepName names a spec step in the UI and on the PR: "build[0] compile".
func stepName(kind string, i int, st previewspec.Step) string {
	name := fmt.Sprintf("%s[%d]", kind, i)
	if st.Name != "" {
		name += " " + st.Name
	}
	return name
}

// visibility is the preview's effective visibility: the spec's, else the
// operator's for the repository, capped by the operator's ceiling.
func (p *preview) visibility() string {
	v := p.settings.Visibility
	if p.SpecVisibility != "" {
		v = p.SpecVisibility
	}
	return previewspec.CapVisibility(v, p.settings.VisibilityMax)
}

// applySpecVisibility folds the spec's visibility into the status as soon
// as the spec is read: before the machine, the Dedalus preview and any wake.
func (p *preview) applySpecVisibility(ctx workflow.Context, spec previewspec.Spec) {
	p.SpecVisibility = spec.Visibility
	v := p.visibility()
	if spec.Visibility != "" && v != spec.Visibility {
		workflow.GetLogger(ctx).Warn("the spec's visibility is above the operator's ceiling (PREVIEW_VISIBILITY_MAX): capped",
			"spec", spec.Visibility, "visibility", v)
	}
	if v != p.Status.Visibility {
		workflow.GetLogger(ctx).Info("preview visibility", "from", p.Status.Visibility, "to", v)
	}
	p.Status.Visibility = v
}

// expose makes the app's port a Dedalus preview (once per machine, and
// again when the visibility changed) and waits for its health path to
// answer.
func (p *preview) expose(ctx workflow.Context, spec previewspec.Spec) error {
	p.step = fmt.Sprintf("expose port %d", spec.App.Port)
	vis := dedalus.VisibilityPublic // runs recorded before the setting exposed every preview public
	if workflow.GetVersion(ctx, "preview-visibility", workflow.DefaultVersion, 1) == 1 {
		vis = p.Status.Visibility
		if p.Status.PreviewID != "" && p.ExposedVisibility != vis {
			// Dedalus cannot change a preview's visibility (its API has
			// no update of a preview): replace the preview.
			if err := workflow.ExecuteActivity(withActivity(ctx, "close the preview to change its visibility to "+vis, time.Minute),
				machineActs.DeletePreview, p.Status.MachineID, p.Status.PreviewID).Get(ctx, nil); err != nil {
				return err
			}
			p.Status.PreviewID, p.Status.URL = "", ""
		}
	}
	if p.Status.PreviewID == "" {
		var pr activities.PreviewRef
		if err := workflow.ExecuteActivity(withActivity(ctx, fmt.Sprintf("expose port %d (%s)", spec.App.Port, vis), time.Minute),
			machineActs.CreatePreview, p.Status.MachineID, spec.App.Port, vis).Get(ctx, &pr); err != nil {
			return err
		}
		p.Status.PreviewID, p.Status.URL = pr.PreviewID, pr.URL
		p.ExposedVisibility = vis
	}
	p.step = "wait for " + spec.App.HealthPath
	return workflow.ExecuteActivity(withActivity(ctx, "wait for "+spec.App.HealthPath, spec.App.HealthTimeout.D()+time.Minute),
		previewActs.WaitHealthy, activities.HealthInput{URL: p.Status.URL + spec.App.HealthPath, Timeout: spec.App.HealthTimeout.D()},
	).Get(ctx, nil)
}

// markReady records the deployed head and reports success.
func (p *preview) markReady(ctx workflow.Context, ev PullRequestEvent) {
	now := workflow.Now(ctx)
	p.Status.DeployedSHA = ev.HeadSHA
	p.Status.LastDeployAt = now
	p.Status.LastActivityAt = now
	p.lastWakeAt = now
	if p.Status.ReadyAt.IsZero() {
		p.Status.ReadyAt = now
	}
	p.FailedSHA = ""
	p.setPhase(ctx, PreviewReady)
	ready := gh.Report{State: "ready", SHA: ev.HeadSHA, Branch: ev.HeadRef, URL: p.settings.PublicURL}
	if p.batched {
		p.announceReady(ctx, ev, ready)
		return
	}
	p.setDeploymentStatus(ctx, "success", "preview ready at "+shortSHA(ev.HeadSHA))
	p.report(ctx, ready)
}
