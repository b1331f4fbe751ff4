package gh

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/go-github/v62/github"
)

// Marker is the hidden HTML comment that identifies Drydock's PR comment.
const Marker = "<!-- drydock:preview -->"

// DeploymentDescription is the description of every deployment Drydock creates.
const DeploymentDescription = "Drydock preview"

// Deployment status states GitHub accepts from Drydock.
const (
	StatusInProgress = "in_progress"
	StatusSuccess    = "success"
	StatusFailure    = "failure"
	StatusInactive   = "inactive"
	StatusError      = "error"
)

// Limits GitHub enforces.
const (
	maxStatusDescription = 140   // characters of a deployment status description
	maxCommentBody       = 65536 // characters of an issue comment
	listPageSize         = 100
	maxListPages         = 50 // 5,000 comments or deployments: stop somewhere
	maxSupersededChecks  = 20
)

// API is Drydock's reporting operations over one authenticated client. Each
// operation is idempotent: calling it again after a crash, with the same
// arguments, converges on the same state on GitHub.
type API struct {
	client *github.Client
	self   func(context.Context) (string, error)
}

// NewAPI wraps a client built elsewhere. Drydock's identity (whose comments
// it may edit) is read once from GET /user; where the credentials may not
// read it, comments are matched by Marker alone.
func NewAPI(c *github.Client) *API {
	var (
		mu    sync.Mutex
		login string
		known bool
	)
	return &API{client: c, self: func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if known {
			return login, nil
		}
		l, err := userLogin(ctx, c)
		if err != nil {
			return "", fmt.Errorf("look up Drydock's GitHub identity: %w", err)
		}
		login, known = l, true
		return login, nil
	}}
}

// Client is the underlying go-github client.
func (a *API) Client() *github.Client { return a.client }

var hexSHA = regexp.MustCompile(`^(?:[0-9a-f]{40}|[0-9a-f]{64})$`)

func checkRepo(owner, repo string) error {
	if owner == "" || repo == "" || strings.ContainsAny(owner+repo, "/?#% ") {
		return fmt.Errorf("repository %q/%q: %w", owner, repo, ErrInvalid)
	}
	return nil
}

// EnsureDeployment returns the deployment of sha to environment, creating it
// if none exists yet. A retry after a crash finds the deployment the first
// attempt created. sha must be a full commit SHA: GitHub's sha filter
// matches full SHAs only, so a short one would create duplicates.
func (a *API) EnsureDeployment(ctx context.Context, owner, repo, sha, environment string) (int64, error) {
	if err := checkRepo(owner, repo); err != nil {
		return 0, err
	}
	if !hexSHA.MatchString(sha) {
		return 0, fmt.Errorf("deployment of %s/%s: %q is not a full lowercase commit SHA: %w", owner, repo, sha, ErrInvalid)
	}
	if environment == "" {
		return 0, fmt.Errorf("deployment of %s/%s@%s: empty environment: %w", owner, repo, sha[:7], ErrInvalid)
	}
	opts := &github.DeploymentsListOptions{SHA: sha, Environment: environment, ListOptions: github.ListOptions{PerPage: listPageSize}}
	for range maxListPages {
		ds, resp, err := a.client.Repositories.ListDeployments(ctx, owner, repo, opts)
		if err != nil {
			return 0, fmt.Errorf("list deployments of %s/%s@%s to %s: %w", owner, repo, sha[:7], environment, err)
		}
		for _, d := range ds { // newest first
			if d.GetSHA() == sha && d.GetEnvironment() == environment {
				return d.GetID(), nil
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	d, _, err := a.client.Repositories.CreateDeployment(ctx, owner, repo, &github.DeploymentRequest{
		Ref:                   github.String(sha),
		Task:                  github.String("deploy"),
		AutoMerge:             github.Bool(false), // never merge the base branch into a PR
		RequiredContexts:      &[]string{},        // deploy whatever the commit statuses say
		Environment:           github.String(environment),
		Description:           github.String(DeploymentDescription),
		TransientEnvironment:  github.Bool(true), // the preview goes away with the PR
		ProductionEnvironment: github.Bool(false),
	})
	if err != nil {
		return 0, fmt.Errorf("create deployment of %s/%s@%s to %s: %w", owner, repo, sha[:7], environment, err)
	}
	return d.GetID(), nil
}

var validStates = map[string]bool{StatusInProgress: true, StatusSuccess: true, StatusFailure: true, StatusInactive: true, StatusError: true}

// SetDeploymentStatus records a status of deployment id. When the newest
// status already says the same thing (a retry after a crash), nothing is
// created. Only success sets auto_inactive: a newer successful deployment
// supersedes older ones, a failed one does not. (GitHub applies
// auto_inactive to non-transient deployments only; see DeactivateSuperseded
// for Drydock's transient ones.) The description is cut to GitHub's 140
// characters.
func (a *API) SetDeploymentStatus(ctx context.Context, owner, repo string, id int64, state, environmentURL, logURL, description string) error {
	if err := checkRepo(owner, repo); err != nil {
		return err
	}
	if id <= 0 {
		return fmt.Errorf("deployment status in %s/%s: deployment ID %d: %w", owner, repo, id, ErrInvalid)
	}
	if !validStates[state] {
		return fmt.Errorf("deployment %d status in %s/%s: state %q is not one of in_progress, success, failure, inactive, error: %w", id, owner, repo, state, ErrInvalid)
	}
	description = truncateRunes(description, maxStatusDescription)
	latest, _, err := a.client.Repositories.ListDeploymentStatuses(ctx, owner, repo, id, &github.ListOptions{PerPage: 1})
	if err != nil {
		return fmt.Errorf("read status of deployment %d in %s/%s: %w", id, owner, repo, err)
	}
	req := deploymentStatusRequest(state, environmentURL, logURL, description)
	if len(latest) > 0 && sameStatus(latest[0], req) {
		return nil
	}
	if _, _, err := a.client.Repositories.CreateDeploymentStatus(ctx, owner, repo, id, req); err != nil {
		return fmt.Errorf("set deployment %d in %s/%s %s: %w", id, owner, repo, state, err)
	}
	return nil
}

// deploymentStatusRequest is the status SetDeploymentStatus creates; only
// success sets auto_inactive.
func deploymentStatusRequest(state, environmentURL, logURL, description string) *github.DeploymentStatusRequest {
	req := &github.DeploymentStatusRequest{
		State:        github.String(state),
		Description:  github.String(description),
		AutoInactive: github.Bool(state == StatusSuccess),
	}
	if environmentURL != "" {
		req.EnvironmentURL = github.String(environmentURL)
	}
	if logURL != "" {
		req.LogURL = github.String(logURL)
	}
	return req
}

// sameStatus reports whether the status s already says what req would.
func sameStatus(s *github.DeploymentStatus, req *github.DeploymentStatusRequest) bool {
	return s.GetState() == req.GetState() && s.GetEnvironmentURL() == req.GetEnvironmentURL() &&
		s.GetLogURL() == req.GetLogURL() && s.GetDescription() == req.GetDescription()
}

// DeactivateSuperseded marks older deployments of deployment id's
// environment inactive when their newest status still claims they are live
// (success, or an in-progress one that was abandoned). GitHub's auto_inactive
// skips transient environments, so without this every push would leave
// another "active" preview in the PR's timeline. It walks the newest older
// deployments first and stops at one that is already inactive: everything
// before it was deactivated with it. It returns how many it deactivated.
func (a *API) DeactivateSuperseded(ctx context.Context, owner, repo string, id int64) (int, error) {
	if err := checkRepo(owner, repo); err != nil {
		return 0, err
	}
	d, _, err := a.client.Repositories.GetDeployment(ctx, owner, repo, id)
	if err != nil {
		return 0, fmt.Errorf("read deployment %d in %s/%s: %w", id, owner, repo, err)
	}
	env := d.GetEnvironment()
	ds, _, err := a.client.Repositories.ListDeployments(ctx, owner, repo, &github.DeploymentsListOptions{
		Environment: env, ListOptions: github.ListOptions{PerPage: maxSupersededChecks + 1},
	})
	if err != nil {
		return 0, fmt.Errorf("list deployments of %s/%s to %s: %w", owner, repo, env, err)
	}
	n := 0
	for _, old := range ds { // newest first
		if old.GetID() >= id || old.GetEnvironment() != env {
			continue // the deployment itself, or a newer one: not superseded by id
		}
		sts, _, err := a.client.Repositories.ListDeploymentStatuses(ctx, owner, repo, old.GetID(), &github.ListOptions{PerPage: 1})
		if err != nil {
			return n, fmt.Errorf("read status of deployment %d in %s/%s: %w", old.GetID(), owner, repo, err)
		}
		if len(sts) == 0 {
			continue
		}
		switch sts[0].GetState() {
		case StatusInactive:
			return n, nil
		case StatusSuccess, StatusInProgress, "queued", "pending":
			if _, _, err := a.client.Repositories.CreateDeploymentStatus(ctx, owner, repo, old.GetID(), &github.DeploymentStatusRequest{
				State: github.String(StatusInactive), Description: github.String("Superseded by a newer deployment"), AutoInactive: github.Bool(false),
			}); err != nil {
				return n, fmt.Errorf("deactivate superseded deployment %d in %s/%s: %w", old.GetID(), owner, repo, err)
			}
			n++
		}
	}
	return n, nil
}

// UpsertComment keeps one Drydock comment on issue or pull request number:
// it edits the oldest comment that carries Marker and was written by
// Drydock's identity (any author when that identity is unknown), or creates
// one. Marker is added to body when missing. An unchanged body is not
// re-sent. It returns the comment's ID.
func (a *API) UpsertComment(ctx context.Context, owner, repo string, number int, body string) (int64, error) {
	if err := checkRepo(owner, repo); err != nil {
		return 0, err
	}
	if number <= 0 {
		return 0, fmt.Errorf("comment on %s/%s#%d: %w", owner, repo, number, ErrInvalid)
	}
	if !strings.Contains(body, Marker) {
		body = Marker + "\n" + body
	}
	if n := utf8.RuneCountInString(body); n > maxCommentBody {
		return 0, fmt.Errorf("comment on %s/%s#%d: body of %d characters exceeds GitHub's %d: %w", owner, repo, number, n, maxCommentBody, ErrInvalid)
	}
	existing, err := a.findOwnComment(ctx, owner, repo, number)
	if err != nil {
		return 0, err
	}
	if existing != nil {
		if id, done, err := a.editComment(ctx, owner, repo, number, existing, body); done || err != nil {
			return id, err
		}
		// deleted since we listed it: write a new one
	}
	c, _, err := a.client.Issues.CreateComment(ctx, owner, repo, number, &github.IssueComment{Body: github.String(body)})
	if err != nil {
		return 0, fmt.Errorf("comment on %s/%s#%d: %w", owner, repo, number, err)
	}
	return c.GetID(), nil
}

// findOwnComment is the oldest comment on number that carries Marker and
// was written by Drydock's identity (any author when it is unknown), or nil.
func (a *API) findOwnComment(ctx context.Context, owner, repo string, number int) (*github.IssueComment, error) {
	self := ""
	if a.self != nil {
		var err error
		if self, err = a.self(ctx); err != nil {
			return nil, err
		}
	}
	return a.findComment(ctx, owner, repo, number, self)
}

// editComment sets the body of comment existing, unless it is unchanged,
// and returns its ID; done is false, without an error, when the comment
// was deleted in the meantime (a new one is to be written).
func (a *API) editComment(ctx context.Context, owner, repo string, number int, existing *github.IssueComment, body string) (id int64, done bool, err error) {
	if existing.GetBody() == body {
		return existing.GetID(), true, nil
	}
	c, _, err := a.client.Issues.EditComment(ctx, owner, repo, existing.GetID(), &github.IssueComment{Body: github.String(body)})
	if err == nil {
		return c.GetID(), true, nil
	}
	if Classify(err).StatusCode != http.StatusNotFound {
		return 0, false, fmt.Errorf("edit comment %d on %s/%s#%d: %w", existing.GetID(), owner, repo, number, err)
	}
	return 0, false, nil
}

func (a *API) findComment(ctx context.Context, owner, repo string, number int, self string) (*github.IssueComment, error) {
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: listPageSize}}
	for range maxListPages {
		cs, resp, err := a.client.Issues.ListComments(ctx, owner, repo, number, opts)
		if err != nil {
			return nil, fmt.Errorf("list comments of %s/%s#%d: %w", owner, repo, number, err)
		}
		for _, c := range cs { // oldest first
			if strings.Contains(c.GetBody(), Marker) && (self == "" || strings.EqualFold(c.GetUser().GetLogin(), self)) {
				return c, nil
			}
		}
		if resp.NextPage == 0 {
			return nil, nil
		}
		opts.Page = resp.NextPage
	}
	return nil, nil
}

// FetchFile reads path at ref ("" = the default branch). A missing file,
// ref or repository (GitHub answers all three, and an inaccessible
// repository, with 404) is found=false without an error. A directory, a
// symlink out of the repository or a file over the contents API's 1 MB
// limit is ErrUnusable.
func (a *API) FetchFile(ctx context.Context, owner, repo, ref, path string) (content []byte, found bool, err error) {
	if err := checkRepo(owner, repo); err != nil {
		return nil, false, err
	}
	path = strings.TrimPrefix(path, "/")
	if path == "" {
		return nil, false, fmt.Errorf("read file in %s/%s: empty path: %w", owner, repo, ErrInvalid)
	}
	file, dir, _, err := a.client.Repositories.GetContents(ctx, owner, repo, path, &github.RepositoryContentGetOptions{Ref: ref})
	if err != nil {
		if Classify(err).StatusCode == http.StatusNotFound {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("read %s at %q in %s/%s: %w", path, ref, owner, repo, err)
	}
	if file == nil || dir != nil || file.GetType() != "file" {
		return nil, false, fmt.Errorf("read %s at %q in %s/%s: not a file: %w", path, ref, owner, repo, ErrUnusable)
	}
	s, err := file.GetContent()
	if err != nil {
		return nil, false, fmt.Errorf("read %s at %q in %s/%s: %v: %w", path, ref, owner, repo, err, ErrUnusable)
	}
	return []byte(s), true, nil
}

// PullRequestState is what GitHub says of a pull request now.
type PullRequestState struct {
	Open    bool
	Merged  bool
	HeadSHA string
	Labels  []string // the labels' names, as GitHub spells them
}

// PullRequest reads a pull request's current state. A pull request GitHub
// answers 404 for (missing, or not visible to the credentials) is
// found=false without an error.
func (a *API) PullRequest(ctx context.Context, owner, repo string, number int) (st PullRequestState, found bool, err error) {
	if err := checkRepo(owner, repo); err != nil {
		return st, false, err
	}
	if number <= 0 {
		return st, false, fmt.Errorf("read pull request %s/%s#%d: %w", owner, repo, number, ErrInvalid)
	}
	pr, _, err := a.client.PullRequests.Get(ctx, owner, repo, number)
	if err != nil {
		if Classify(err).StatusCode == http.StatusNotFound {
			return st, false, nil
		}
		return st, false, fmt.Errorf("read pull request %s/%s#%d: %w", owner, repo, number, err)
	}
	st = PullRequestState{Open: pr.GetState() == "open", Merged: pr.GetMerged(), HeadSHA: pr.GetHead().GetSHA()}
	for _, l := range pr.Labels {
		st.Labels = append(st.Labels, l.GetName())
	}
	return st, true, nil
}

// RemoveLabel removes a label from a pull request (an issue, to GitHub's
// API). A label the pull request does not carry (404) counts as removed.
func (a *API) RemoveLabel(ctx context.Context, owner, repo string, number int, label string) error {
	if err := checkRepo(owner, repo); err != nil {
		return err
	}
	if number <= 0 || label == "" {
		return fmt.Errorf("remove label %q from %s/%s#%d: %w", label, owner, repo, number, ErrInvalid)
	}
	// go-github puts the name in the path as it is: escape it (names may
	// hold spaces and slashes).
	_, err := a.client.Issues.RemoveLabelForIssue(ctx, owner, repo, number, url.PathEscape(label))
	if err != nil && Classify(err).StatusCode != http.StatusNotFound {
		return fmt.Errorf("remove label %q from %s/%s#%d: %w", label, owner, repo, number, err)
	}
	return nil
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
