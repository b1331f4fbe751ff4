package intake

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/workflows"
)

// Temporal is the part of the Temporal client the pull_request router uses
// (client.Client satisfies it; tests use a fake).
type Temporal interface {
	SignalWithStartWorkflow(ctx context.Context, workflowID string, signalName string, signalArg any,
		options client.StartWorkflowOptions, workflow any, workflowArgs ...any) (client.WorkflowRun, error)
	SignalWorkflow(ctx context.Context, workflowID string, runID string, signalName string, arg any) error
}

// PreviewPolicy decides which pull requests get a preview. A preview runs
// the pull request's code, so pull requests from forks need a maintainer's
// label before they get one.
type PreviewPolicy struct {
	// Label is the opt-in label (PREVIEW_FORK_LABEL). Fork pull requests get
	// a preview only while they carry it; with RequireLabel, every pull
	// request does. Empty means fork pull requests never get a preview.
	// Compared case-insensitively, as GitHub compares label names.
	Label string
	// RequireLabel (PREVIEW_REQUIRE_LABEL) turns on opt-in by label for all
	// pull requests: adding Label starts a preview, removing it tears the
	// preview down.
	RequireLabel bool
	// Drafts (PREVIEW_DRAFTS) gives draft pull requests a preview. Without
	// it, drafts wait for ready_for_review.
	Drafts bool
	// Repos (PREVIEW_REPOS) is an allow-list of "owner/repo" (compared
	// case-insensitively); empty allows every repository that sends events.
	Repos []string
	// SkipBots (PREVIEW_SKIP_BOTS) gives pull requests opened by bots
	// (author of type Bot, or a login ending in "[bot]": Dependabot,
	// Renovate) no preview unless they carry Label, which then admits them
	// as it admits forks.
	SkipBots bool
	// LocalCloneURLs (PREVIEW_LOCAL_CLONE_URLS) also accepts absolute local
	// paths as clone URLs: for local development against the emulator, whose
	// machines clone from this computer's disk. Never in production.
	LocalCloneURLs bool
}

var githubName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)

// Validate reports a policy that cannot work, naming the variable at fault.
func (p PreviewPolicy) Validate() error {
	if p.RequireLabel && strings.TrimSpace(p.Label) == "" {
		return errors.New("PREVIEW_REQUIRE_LABEL is true but PREVIEW_FORK_LABEL is empty: no pull request could ever get a preview")
	}
	for _, r := range p.Repos {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		owner, name, ok := strings.Cut(r, "/")
		if !ok || !githubName.MatchString(owner) || !githubName.MatchString(name) {
			return fmt.Errorf("PREVIEW_REPOS: %q is not owner/repo", r)
		}
	}
	return nil
}

// PullRequestOptions configures a PullRequests router.
type PullRequestOptions struct {
	Temporal Temporal
	Policy   PreviewPolicy
	// Timeout bounds each Temporal call, so GitHub (which gives up after
	// 10 seconds) hears 503 rather than nothing. Default 5s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// PullRequests routes pull_request events to the PreviewLifecycle workflow
// of each pull request (ID workflows.PreviewWorkflowID):
//
//   - opened, reopened, synchronize, ready_for_review, and labeled with the
//     opt-in label where the label is what admits the pull request, start
//     the workflow or signal the running one (SignalWithStart) when the
//     policy admits the pull request: 202;
//   - closed, and unlabeled of the opt-in label where the label is what
//     admitted the pull request, only signal a running workflow: 202, or 200
//     "no preview to tear down" when there is none;
//   - every other action, and anything the policy skips: 200 with the reason;
//   - a payload missing what the workflow needs: 400, nothing started;
//   - any Temporal error: an error (503), so GitHub can redeliver.
//
// The workflow receives a workflows.PullRequestEvent, never the raw payload.
// It is sent "labeled" and "unlabeled" only when they start or end a
// preview, so it can treat every "unlabeled" it receives as a teardown.
type PullRequests struct {
	temporal Temporal
	policy   PreviewPolicy
	repos    map[string]bool
	timeout  time.Duration
	log      *slog.Logger
}

// NewPullRequests validates opts and returns the router.
func NewPullRequests(opts PullRequestOptions) (*PullRequests, error) {
	if opts.Temporal == nil {
		return nil, errors.New("intake: PullRequestOptions.Temporal is nil")
	}
	if err := opts.Policy.Validate(); err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	p := &PullRequests{temporal: opts.Temporal, policy: opts.Policy, timeout: opts.Timeout, log: opts.Logger}
	p.policy.Label = strings.TrimSpace(p.policy.Label)
	for _, r := range opts.Policy.Repos {
		if r = strings.TrimSpace(r); r != "" {
			if p.repos == nil {
				p.repos = map[string]bool{}
			}
			p.repos[strings.ToLower(r)] = true
		}
	}
	return p, nil
}

// What an action asks of the preview.
type intent int

const (
	ignore   intent = iota
	deploy          // SignalWithStart
	teardown        // Signal only
)

// Route implements Router.
func (p *PullRequests) Route(ctx context.Context, ev Event) (Result, error) {
	pe, err := decoded[pullRequestPayload](ev)
	if err != nil {
		return Result{Status: http.StatusBadRequest, Reason: "malformed pull_request payload: " + err.Error(), Code: "malformed_payload"}, nil
	}
	pre := pe.event(ev.DeliveryID)
	if p.policy.Label != "" && (p.policy.RequireLabel || pre.Fork) {
		// The label is what admits this pull request: the workflow asks
		// GitHub for it before every deploy, and pins a fork's approval to
		// the commit the label was added at.
		pre.ApprovalLabel = p.policy.Label
	}
	want := p.intent(pe, pre)
	if want == ignore {
		return Result{Status: http.StatusOK, Reason: fmt.Sprintf("pull_request action %q does not affect previews", pre.Action), Code: "action_not_handled"}, nil
	}
	if reason := validate(pe, pre, want == deploy, p.policy.LocalCloneURLs); reason != "" {
		return Result{Status: http.StatusBadRequest, Reason: reason, Code: "invalid_payload"}, nil
	}
	id := workflows.PreviewWorkflowID(pre.Owner, pre.Repo, pre.Number)
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if want == teardown {
		return p.teardown(ctx, id, pre)
	}
	if reason := p.skip(pe, pre); reason != "" {
		return Result{Status: http.StatusOK, Reason: "no preview: " + reason, Code: "policy"}, nil
	}
	opts := client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: workflows.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrRepo.ValueSet(RepoKey(pre.Owner, pre.Repo)),
			workflows.SearchAttrPRNumber.ValueSet(int64(pre.Number)),
		),
	}
	run, err := p.temporal.SignalWithStartWorkflow(ctx, id, workflows.SignalPullRequest, pre, opts,
		workflows.PreviewLifecycleName, workflows.PreviewInput{Owner: pre.Owner, Repo: pre.Repo, Number: pre.Number})
	if err != nil {
		return Result{}, fmt.Errorf("signal-with-start %s (%s, delivery %s): %w", id, pre.Action, ev.DeliveryID, err)
	}
	p.log.Debug("preview signalled", "workflow_id", id, "run_id", run.GetRunID(), "action", pre.Action, "head_sha", pre.HeadSHA)
	return Result{Status: http.StatusAccepted, Reason: fmt.Sprintf("preview requested (%s)", pre.Action), WorkflowID: id, Accepted: true}, nil
}

func (p *PullRequests) teardown(ctx context.Context, id string, pre workflows.PullRequestEvent) (Result, error) {
	err := p.temporal.SignalWorkflow(ctx, id, "", workflows.SignalPullRequest, pre)
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		// No workflow, or it already completed: nothing to tear down, and
		// nothing must be started for a closed pull request.
		return Result{Status: http.StatusOK, Reason: "no preview to tear down", WorkflowID: id, Code: "no_preview"}, nil
	case err != nil:
		return Result{}, fmt.Errorf("signal %s (%s, delivery %s): %w", id, pre.Action, pre.DeliveryID, err)
	}
	return Result{Status: http.StatusAccepted, Reason: fmt.Sprintf("teardown requested (%s)", pre.Action), WorkflowID: id, Accepted: true}, nil
}

// intent classifies the action. labeled and unlabeled matter only for the
// opt-in label, and only where that label admits the pull request (opt-in
// mode, or a fork).
func (p *PullRequests) intent(pe *pullRequestPayload, pre workflows.PullRequestEvent) intent {
	switch pre.Action {
	case "opened", "reopened", "synchronize", "ready_for_review":
		return deploy
	case "closed":
		return teardown
	case "labeled", "unlabeled":
		if !p.isLabel(pe.Label.Name) || !(p.policy.RequireLabel || pre.Fork || p.skipsBot(pe)) {
			return ignore
		}
		if pre.Action == "labeled" {
			return deploy
		}
		return teardown
	}
	return ignore
}

func (p *PullRequests) isLabel(name string) bool {
	return p.policy.Label != "" && strings.EqualFold(strings.TrimSpace(name), p.policy.Label)
}

// skip returns why the policy gives this pull request no preview, or "".
func (p *PullRequests) skip(pe *pullRequestPayload, pre workflows.PullRequestEvent) string {
	if p.repos != nil && !p.repos[RepoKey(pre.Owner, pre.Repo)] {
		return fmt.Sprintf("repository %s/%s is not in the preview allow-list", pre.Owner, pre.Repo)
	}
	if st := pe.pullRequestState(); st != "" && st != "open" {
		return fmt.Sprintf("pull request is %s", st)
	}
	if pre.Draft && !p.policy.Drafts {
		return "draft pull request (previews start when it is ready for review)"
	}
	bot := p.skipsBot(pe)
	if !p.policy.RequireLabel && !pre.Fork && !bot {
		return ""
	}
	if p.hasLabel(pre.Labels) {
		return ""
	}
	return p.unlabeledReason(pe, pre.Fork, bot)
}

// hasLabel reports whether labels hold the policy's preview label.
func (p *PullRequests) hasLabel(labels []string) bool {
	for _, l := range labels {
		if p.isLabel(l) {
			return true
		}
	}
	return false
}

// unlabeledReason says why a pull request that needs the preview label
// (a fork's, a skipped bot's, or any with PREVIEW_REQUIRE_LABEL) and has not
// got it gets no preview.
func (p *PullRequests) unlabeledReason(pe *pullRequestPayload, fork, bot bool) string {
	switch {
	case bot && !fork && !p.policy.RequireLabel:
		author := pe.author().Login
		if p.policy.Label == "" {
			return fmt.Sprintf("pull request opened by the bot %s (PREVIEW_SKIP_BOTS)", author)
		}
		return fmt.Sprintf("pull request opened by the bot %s (PREVIEW_SKIP_BOTS; a maintainer adds the %q label to preview it)", author, p.policy.Label)
	case p.policy.Label == "":
		return "pull request from a fork (fork previews are disabled)"
	case fork:
		return fmt.Sprintf("pull request from a fork without the %q label (a maintainer adds it to preview the fork's code)", p.policy.Label)
	default:
		return fmt.Sprintf("pull request without the %q label", p.policy.Label)
	}
}

// skipsBot reports whether the pull request was opened by a bot the policy
// skips (PREVIEW_SKIP_BOTS).
func (p *PullRequests) skipsBot(pe *pullRequestPayload) bool {
	u := pe.author()
	return p.policy.SkipBots && (strings.EqualFold(u.Type, "Bot") || strings.HasSuffix(strings.ToLower(u.Login), "[bot]"))
}

// RepoKey is the value of the DrydockRepo search attribute and the form the
// allow-list is matched in: "owner/repo", lower case like the workflow ID.
func RepoKey(owner, repo string) string { return workflows.RepoKey(owner, repo) }

// validate returns why the delivery cannot be acted on, or "". A teardown
// needs only the pull request's identity: a closed pull request whose fork
// was deleted has no head repository and must still be torn down.
func validate(pe *pullRequestPayload, pre workflows.PullRequestEvent, deploy, localClone bool) string {
	var ps problems
	ps.githubName("repository.owner.login", pre.Owner)
	ps.githubName("repository.name", pre.Repo)
	if pre.Number <= 0 {
		ps.missing = append(ps.missing, "number")
	}
	if pe.PullRequest == nil {
		ps.missing = append(ps.missing, "pull_request")
	}
	if deploy {
		if ps.present("pull_request.head.sha", pre.HeadSHA) && !isSHA(pre.HeadSHA) {
			ps.invalid = append(ps.invalid, "pull_request.head.sha is not a commit SHA")
		}
		ps.present("pull_request.head.ref", pre.HeadRef)
		if ps.present("pull_request.head.repo.clone_url", pre.CloneURL) && !isCloneURL(pre.CloneURL) && !(localClone && isLocalPath(pre.CloneURL)) {
			ps.invalid = append(ps.invalid, "pull_request.head.repo.clone_url is not an http(s) URL without credentials")
		}
	}
	return ps.reason("pull_request")
}

// isSHA accepts SHA-1 and SHA-256 object names.
func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// isLocalPath accepts a plain absolute path (no transport syntax).
func isLocalPath(s string) bool {
	return strings.HasPrefix(s, "/") && !strings.Contains(s, "::") && !strings.ContainsAny(s, "\x00\n")
}

// isCloneURL refuses anything git would treat as another transport
// (ext::, file://, ssh) and URLs carrying credentials.
func isCloneURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil
}
