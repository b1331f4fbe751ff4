package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/gh"
)

// Stable error types of GitHub activity failures.
const (
	// ErrTypeGitHubRejected: GitHub refused the call and will refuse it
	// again (401, 403 other than rate limits, 404, 422). Non-retryable.
	ErrTypeGitHubRejected = "GitHubRejected"
	// ErrTypeGitHubUnavailable: no answer, 5xx or a retryable answer; retried.
	ErrTypeGitHubUnavailable = "GitHubUnavailable"
	// ErrTypeGitHubRateLimited: a primary or secondary rate limit; retried
	// after the delay GitHub asked for (NextRetryDelay).
	ErrTypeGitHubRateLimited = "GitHubRateLimited"
	// ErrTypePreviewSpecTooLarge: the preview spec file exceeds MaxPreviewSpecBytes. Non-retryable.
	ErrTypePreviewSpecTooLarge = "PreviewSpecTooLarge"
)

// MaxPreviewSpecBytes bounds the preview spec FetchPreviewSpec carries into
// workflow history.
const MaxPreviewSpecBytes = 256 << 10

// PreviewEnvironment is the GitHub deployment environment of pull request
// number's preview: "preview/pr-<number>".
func PreviewEnvironment(number int) string {
	return "preview/pr-" + strconv.Itoa(number)
}

// TemporalUIWorkflowURL links a workflow (its latest run) in the Temporal UI:
// <uiBase>/namespaces/<namespace>/workflows/<escaped workflow ID>.
func TemporalUIWorkflowURL(uiBase, namespace, workflowID string) string {
	if namespace == "" {
		namespace = "default"
	}
	return strings.TrimRight(uiBase, "/") + "/namespaces/" + url.PathEscape(namespace) + "/workflows/" + url.PathEscape(workflowID)
}

// GitHub reports previews on GitHub: deployments with statuses, one PR
// comment, and the preview spec read from the base branch. Register it with
// a worker: w.RegisterActivity(&activities.GitHub{Clients: c, ...}).
//
// With Clients nil (no GitHub credentials: local mode) every activity logs
// that it skipped and returns Skipped or nil; nothing is faked.
type GitHub struct {
	Clients   *gh.Clients  // nil = not configured
	UIBaseURL string       // Temporal UI, e.g. http://localhost:8233; "" = no workflow links
	Namespace string       // Temporal namespace of the workflows (default "default")
	Logger    *slog.Logger // default slog.Default()
	// HeartbeatEvery is how often the activities heartbeat while they wait
	// for GitHub (default 2s).
	HeartbeatEvery time.Duration
}

// heartbeat heartbeats while an activity waits for GitHub (rate-limit
// waits, slow answers, retries); call the returned stop when done.
func (a *GitHub) heartbeat(ctx context.Context, what string) (stop func()) {
	return heartbeatDuring(ctx, a.HeartbeatEvery, what)
}

func (a *GitHub) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// skipped logs that GitHub is not configured. It reports true in local mode.
func (a *GitHub) skipped(ctx context.Context, what, owner, repo string, number int) bool {
	if a.Clients != nil {
		return false
	}
	attrs := []any{"activity", what, "repo", owner + "/" + repo}
	if number > 0 {
		attrs = append(attrs, "pr", number)
	}
	if activity.IsActivity(ctx) {
		attrs = append(attrs, "workflow_id", activity.GetInfo(ctx).WorkflowExecution.ID)
	}
	a.logger().InfoContext(ctx, "GitHub reporting skipped: no GitHub credentials configured", attrs...)
	return true
}

// workflowURL is the calling workflow's Temporal UI link, "" without UIBaseURL.
func (a *GitHub) workflowURL(ctx context.Context) string {
	if a.UIBaseURL == "" || !activity.IsActivity(ctx) {
		return ""
	}
	return TemporalUIWorkflowURL(a.UIBaseURL, a.Namespace, activity.GetInfo(ctx).WorkflowExecution.ID)
}

func (a *GitHub) api(installationID int64) (*gh.API, error) {
	api, err := a.Clients.API(installationID)
	if err != nil {
		return nil, classifyGitHub(err)
	}
	return api, nil
}

// classifyGitHub turns a gh error into what Temporal should do with it.
func classifyGitHub(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the activity was cancelled or timed out: Temporal decides
	}
	if errors.Is(err, gh.ErrInvalid) || errors.Is(err, gh.ErrNoInstallation) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidArgument, nil)
	}
	f := gh.Classify(err)
	switch {
	case f.Permanent:
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitHubRejected, nil, f.StatusCode)
	case f.RateLimited:
		return temporal.NewApplicationErrorWithOptions(err.Error(), ErrTypeGitHubRateLimited, temporal.ApplicationErrorOptions{
			NextRetryDelay: f.RetryAfter, Details: []any{f.StatusCode},
		})
	default:
		return temporal.NewApplicationErrorWithOptions(err.Error(), ErrTypeGitHubUnavailable, temporal.ApplicationErrorOptions{
			NextRetryDelay: f.RetryAfter, // 0 = the retry policy's backoff
			Details:        []any{f.StatusCode},
		})
	}
}

// DeploymentInput names the deployment of one commit of a pull request.
type DeploymentInput struct {
	Owner, Repo    string
	Number         int
	InstallationID int64  // 0 = the configured default installation (App mode)
	SHA            string // full head commit SHA
	Environment    string // "" = PreviewEnvironment(Number)
}

// DeploymentRef is the GitHub deployment a workflow reports to.
type DeploymentRef struct {
	ID      int64
	Skipped bool // local mode: no deployment exists
}

// StartDeployment finds or creates the deployment of SHA to the PR's
// environment and marks it in_progress, linking the workflow as its log.
// Retries find the same deployment and do not repeat the status.
func (a *GitHub) StartDeployment(ctx context.Context, in DeploymentInput) (DeploymentRef, error) {
	if a.skipped(ctx, "StartDeployment", in.Owner, in.Repo, in.Number) {
		return DeploymentRef{Skipped: true}, nil
	}
	defer a.heartbeat(ctx, "StartDeployment")()
	env := in.Environment
	if env == "" && in.Number > 0 {
		env = PreviewEnvironment(in.Number)
	}
	api, err := a.api(in.InstallationID)
	if err != nil {
		return DeploymentRef{}, err
	}
	id, err := api.EnsureDeployment(ctx, in.Owner, in.Repo, in.SHA, env)
	if err != nil {
		return DeploymentRef{}, classifyGitHub(err)
	}
	if err := api.SetDeploymentStatus(ctx, in.Owner, in.Repo, id, gh.StatusInProgress, "", a.workflowURL(ctx), "Deploying the preview"); err != nil {
		return DeploymentRef{}, classifyGitHub(err)
	}
	return DeploymentRef{ID: id}, nil
}

// DeploymentStatusInput is a status for a deployment StartDeployment made.
type DeploymentStatusInput struct {
	Owner, Repo    string
	InstallationID int64
	DeploymentID   int64
	State          string // in_progress, success, failure, inactive, error
	EnvironmentURL string // the preview URL (for success)
	Description    string // cut to GitHub's 140 characters
}

// SetDeploymentStatus records a deployment status, linking the workflow in
// the Temporal UI as its log. After success or inactive, older deployments
// of the same environment that still look live are marked inactive (GitHub's
// auto_inactive does not apply to transient environments). Repeating the
// newest status is a no-op, so retries do not duplicate it.
func (a *GitHub) SetDeploymentStatus(ctx context.Context, in DeploymentStatusInput) error {
	if a.skipped(ctx, "SetDeploymentStatus", in.Owner, in.Repo, 0) {
		return nil
	}
	defer a.heartbeat(ctx, "SetDeploymentStatus")()
	api, err := a.api(in.InstallationID)
	if err != nil {
		return err
	}
	if err := api.SetDeploymentStatus(ctx, in.Owner, in.Repo, in.DeploymentID, in.State, in.EnvironmentURL, a.workflowURL(ctx), in.Description); err != nil {
		return classifyGitHub(err)
	}
	if in.State == gh.StatusSuccess || in.State == gh.StatusInactive {
		n, err := api.DeactivateSuperseded(ctx, in.Owner, in.Repo, in.DeploymentID)
		if err != nil {
			return classifyGitHub(err)
		}
		if n > 0 {
			a.logger().DebugContext(ctx, "deactivated superseded GitHub deployments", "repo", in.Owner+"/"+in.Repo,
				"deployment_id", in.DeploymentID, "count", n)
		}
	}
	return nil
}

// CommentInput is the report to show on a pull request.
type CommentInput struct {
	Owner, Repo    string
	Number         int
	InstallationID int64
	Report         gh.Report
}

// ReportOnPR renders the report (with the workflow's Temporal UI link, and
// now as its time if it has none) and writes it to the PR's Drydock
// comment, creating the comment the first time.
func (a *GitHub) ReportOnPR(ctx context.Context, in CommentInput) error {
	if a.skipped(ctx, "ReportOnPR", in.Owner, in.Repo, in.Number) {
		return nil
	}
	defer a.heartbeat(ctx, "ReportOnPR")()
	r := in.Report
	if u := a.workflowURL(ctx); u != "" {
		r.WorkflowURL = u
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = time.Now()
	}
	api, err := a.api(in.InstallationID)
	if err != nil {
		return err
	}
	if _, err := api.UpsertComment(ctx, in.Owner, in.Repo, in.Number, gh.RenderComment(r)); err != nil {
		return classifyGitHub(err)
	}
	return nil
}

// PullRequestRef names a pull request.
type PullRequestRef struct {
	Owner, Repo    string
	Number         int
	InstallationID int64
}

// PullRequestState is GitHub's current word on a pull request.
type PullRequestState struct {
	Known   bool // GitHub answered; false in local mode or when it answers 404
	Open    bool
	Merged  bool
	HeadSHA string
	// Labels are the pull request's labels now.
	Labels []string `json:",omitempty"`
	// Skipped: local mode, GitHub was not asked.
	Skipped bool `json:",omitempty"`
}

// HasLabel reports whether GitHub says the pull request carries label
// (compared case-insensitively, as GitHub compares label names).
func (s PullRequestState) HasLabel(label string) bool {
	for _, l := range s.Labels {
		if strings.EqualFold(strings.TrimSpace(l), strings.TrimSpace(label)) {
			return true
		}
	}
	return false
}

// Closed reports whether GitHub says the pull request is closed.
func (s PullRequestState) Closed() bool { return s.Known && !s.Open }

// PullRequestState asks GitHub whether the pull request is still open.
// GitHub does not promise delivery order: an opened or synchronize delivery
// can arrive after closed, and the workflow asks before it creates a
// machine. A pull request GitHub does not show is Known false.
func (a *GitHub) PullRequestState(ctx context.Context, in PullRequestRef) (PullRequestState, error) {
	if a.skipped(ctx, "PullRequestState", in.Owner, in.Repo, in.Number) {
		return PullRequestState{Skipped: true}, nil
	}
	defer a.heartbeat(ctx, "PullRequestState")()
	api, err := a.api(in.InstallationID)
	if err != nil {
		return PullRequestState{}, err
	}
	st, found, err := api.PullRequest(ctx, in.Owner, in.Repo, in.Number)
	if err != nil {
		return PullRequestState{}, classifyGitHub(err)
	}
	return PullRequestState{Known: found, Open: st.Open, Merged: st.Merged, HeadSHA: st.HeadSHA, Labels: st.Labels}, nil
}

// LabelInput names a label on a pull request.
type LabelInput struct {
	Owner, Repo    string
	Number         int
	InstallationID int64
	Label          string
}

// RemoveLabel takes a label off a pull request (the preview opt-in label,
// when a fork pushes commits nobody approved). A label already gone counts
// as removed.
func (a *GitHub) RemoveLabel(ctx context.Context, in LabelInput) error {
	if a.skipped(ctx, "RemoveLabel", in.Owner, in.Repo, in.Number) {
		return nil
	}
	defer a.heartbeat(ctx, "RemoveLabel")()
	api, err := a.api(in.InstallationID)
	if err != nil {
		return err
	}
	return classifyGitHub(api.RemoveLabel(ctx, in.Owner, in.Repo, in.Number, in.Label))
}

// FetchSpecInput names the preview spec file to read.
type FetchSpecInput struct {
	Owner, Repo    string
	Ref            string // the PR's base branch: a PR cannot change its own spec
	Path           string // e.g. .drydock/preview.yml
	InstallationID int64
}

// FetchSpecResult is the spec file's content, if it exists.
type FetchSpecResult struct {
	Found   bool
	Content string
	Skipped bool // local mode: GitHub was not asked
}

// FetchPreviewSpec reads the preview spec at Ref. A missing file (or ref,
// or a repository the credentials cannot see) is Found false, not an error.
func (a *GitHub) FetchPreviewSpec(ctx context.Context, in FetchSpecInput) (FetchSpecResult, error) {
	if a.skipped(ctx, "FetchPreviewSpec", in.Owner, in.Repo, 0) {
		return FetchSpecResult{Skipped: true}, nil
	}
	defer a.heartbeat(ctx, "FetchPreviewSpec")()
	api, err := a.api(in.InstallationID)
	if err != nil {
		return FetchSpecResult{}, err
	}
	b, found, err := api.FetchFile(ctx, in.Owner, in.Repo, in.Ref, in.Path)
	if err != nil {
		return FetchSpecResult{}, classifyGitHub(err)
	}
	if len(b) > MaxPreviewSpecBytes {
		return FetchSpecResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s/%s:%s@%s is %d bytes; a preview spec may have at most %d", in.Owner, in.Repo, in.Path, in.Ref, len(b), MaxPreviewSpecBytes),
			ErrTypePreviewSpecTooLarge, nil)
	}
	return FetchSpecResult{Found: found, Content: string(b)}, nil
}
