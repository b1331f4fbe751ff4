package gh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v62/github"

	"github.com/drydock-dev/drydock/internal/pools"
)

// Self-hosted runner operations. A pool's scope decides which API family is
// used: an organization's runners (/orgs/{org}/actions/runners, needing the
// "Self-hosted runners: write" organization permission, or admin:org for a
// classic token) or one repository's (/repos/{owner}/{repo}/actions/runners,
// needing "Administration: write" on the repository, or repo for a classic
// token). Reading a job (/repos/{owner}/{repo}/actions/jobs/{id}) needs
// "Actions: read".

// ErrRunnerExists: GitHub already has a runner of that name in the scope (it
// answers 409 to a JIT config for a taken name). Permanent for that name.
var ErrRunnerExists = errors.New("a runner with this name already exists")

// ErrRunnerBusy: GitHub refuses to remove a runner while it runs a job (422).
var ErrRunnerBusy = errors.New("the runner is running a job")

// ErrRunnerNotFound: no runner with that ID in the scope (404).
var ErrRunnerNotFound = errors.New("no such runner")

// Runner statuses as GitHub reports them.
const (
	RunnerOnline  = "online"
	RunnerOffline = "offline"
)

// maxRunnerLabels is how many labels GitHub accepts in a JIT config request.
const maxRunnerLabels = 100

// Runner is a self-hosted runner as GitHub lists it.
type Runner struct {
	ID     int64
	Name   string
	Status string // RunnerOnline or RunnerOffline
	Busy   bool   // running a job
	Labels []string
}

// Online reports whether the runner is connected to GitHub.
func (r Runner) Online() bool { return r.Status == RunnerOnline }

func runnerFrom(r *github.Runner) Runner {
	out := Runner{ID: r.GetID(), Name: r.GetName(), Status: r.GetStatus(), Busy: r.GetBusy()}
	for _, l := range r.Labels {
		out.Labels = append(out.Labels, l.GetName())
	}
	return out
}

// target is a validated scope: an organization, or one repository.
type target struct {
	org         string
	owner, repo string
}

func (t target) String() string {
	if t.org != "" {
		return "organization " + t.org
	}
	return "repository " + t.owner + "/" + t.repo
}

func scopeTarget(s pools.Scope) (target, error) {
	switch s.Kind {
	case pools.ScopeOrg:
		if s.Org == "" || strings.ContainsAny(s.Org, "/?#% ") {
			return target{}, fmt.Errorf("runner scope: organization %q: %w", s.Org, ErrInvalid)
		}
		return target{org: s.Org}, nil
	case pools.ScopeRepo:
		owner, repo, ok := strings.Cut(s.Repo, "/")
		if !ok {
			return target{}, fmt.Errorf("runner scope: repository %q is not owner/repo: %w", s.Repo, ErrInvalid)
		}
		if err := checkRepo(owner, repo); err != nil {
			return target{}, fmt.Errorf("runner scope: %w", err)
		}
		return target{owner: owner, repo: repo}, nil
	default:
		return target{}, fmt.Errorf("runner scope: kind %q is not %q or %q: %w", s.Kind, pools.ScopeOrg, pools.ScopeRepo, ErrInvalid)
	}
}

// GenerateJITConfig registers a single-use (just-in-time) runner named name
// with labels in runner group groupID (0: pools.DefaultRunnerGroupID, GitHub's
// "Default" group) and returns
// its encoded configuration, which `run.sh --jitconfig` consumes, and the
// runner's ID. The encoded configuration is a credential: it never appears
// in this package's errors. A name that is taken in the scope is
// ErrRunnerExists (GitHub's 409).
func (a *API) GenerateJITConfig(ctx context.Context, scope pools.Scope, name string, labels []string, groupID int64) (encoded string, runnerID int64, err error) {
	t, err := scopeTarget(scope)
	if err != nil {
		return "", 0, err
	}
	if name == "" || strings.TrimSpace(name) != name {
		return "", 0, fmt.Errorf("JIT runner in %s: name %q: %w", t, name, ErrInvalid)
	}
	if len(labels) == 0 || len(labels) > maxRunnerLabels {
		return "", 0, fmt.Errorf("JIT runner %s in %s: %d labels, GitHub wants 1 to %d: %w", name, t, len(labels), maxRunnerLabels, ErrInvalid)
	}
	if groupID <= 0 {
		groupID = pools.DefaultRunnerGroupID
	}
	req := &github.GenerateJITConfigRequest{
		Name: name, RunnerGroupID: groupID, Labels: labels, WorkFolder: github.String("_work"),
	}
	var cfg *github.JITRunnerConfig
	if t.org != "" {
		cfg, _, err = a.client.Actions.GenerateOrgJITConfig(ctx, t.org, req)
	} else {
		cfg, _, err = a.client.Actions.GenerateRepoJITConfig(ctx, t.owner, t.repo, req)
	}
	if err != nil {
		if Classify(err).StatusCode == http.StatusConflict {
			return "", 0, fmt.Errorf("JIT runner %s in %s: %w: %w", name, t, ErrRunnerExists, err)
		}
		return "", 0, fmt.Errorf("JIT runner %s in %s: %w", name, t, err)
	}
	if cfg.GetEncodedJITConfig() == "" || cfg.GetRunner().GetID() == 0 {
		return "", 0, fmt.Errorf("JIT runner %s in %s: GitHub answered without a runner or config: %w", name, t, ErrUnusable)
	}
	return cfg.GetEncodedJITConfig(), cfg.GetRunner().GetID(), nil
}

// RegistrationToken creates a registration token for `config.sh --token`
// (persistent runners). It is a credential valid for an hour.
func (a *API) RegistrationToken(ctx context.Context, scope pools.Scope) (token string, expires time.Time, err error) {
	t, err := scopeTarget(scope)
	if err != nil {
		return "", time.Time{}, err
	}
	var rt *github.RegistrationToken
	if t.org != "" {
		rt, _, err = a.client.Actions.CreateOrganizationRegistrationToken(ctx, t.org)
	} else {
		rt, _, err = a.client.Actions.CreateRegistrationToken(ctx, t.owner, t.repo)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("runner registration token for %s: %w", t, err)
	}
	if rt.GetToken() == "" {
		return "", time.Time{}, fmt.Errorf("runner registration token for %s: empty answer: %w", t, ErrUnusable)
	}
	return rt.GetToken(), rt.GetExpiresAt().Time, nil
}

// WorkflowJob reads a GitHub Actions job: its status (queued, in_progress,
// completed, waiting...), its conclusion once completed, and the runner
// that took it ("" before one did).
func (a *API) WorkflowJob(ctx context.Context, owner, repo string, jobID int64) (status, conclusion, runnerName string, err error) {
	if err := checkRepo(owner, repo); err != nil {
		return "", "", "", err
	}
	if jobID <= 0 {
		return "", "", "", fmt.Errorf("job %d in %s/%s: %w", jobID, owner, repo, ErrInvalid)
	}
	j, _, err := a.client.Actions.GetWorkflowJobByID(ctx, owner, repo, jobID)
	if err != nil {
		return "", "", "", fmt.Errorf("read job %d in %s/%s: %w", jobID, owner, repo, err)
	}
	return j.GetStatus(), j.GetConclusion(), j.GetRunnerName(), nil
}

// ListRunners lists every self-hosted runner of the scope (all pages).
func (a *API) ListRunners(ctx context.Context, scope pools.Scope) ([]Runner, error) {
	return a.listRunners(ctx, scope, "")
}

// RunnerByName finds the runner called name in the scope (GitHub's name
// filter is exact). found is false when there is none.
func (a *API) RunnerByName(ctx context.Context, scope pools.Scope, name string) (r Runner, found bool, err error) {
	if name == "" {
		return Runner{}, false, fmt.Errorf("find runner: empty name: %w", ErrInvalid)
	}
	rs, err := a.listRunners(ctx, scope, name)
	if err != nil {
		return Runner{}, false, err
	}
	for _, r := range rs {
		if r.Name == name {
			return r, true, nil
		}
	}
	return Runner{}, false, nil
}

func (a *API) listRunners(ctx context.Context, scope pools.Scope, name string) ([]Runner, error) {
	t, err := scopeTarget(scope)
	if err != nil {
		return nil, err
	}
	opts := &github.ListRunnersOptions{ListOptions: github.ListOptions{PerPage: listPageSize}}
	if name != "" {
		opts.Name = github.String(name)
	}
	var out []Runner
	for range maxListPages {
		var rs *github.Runners
		var resp *github.Response
		if t.org != "" {
			rs, resp, err = a.client.Actions.ListOrganizationRunners(ctx, t.org, opts)
		} else {
			rs, resp, err = a.client.Actions.ListRunners(ctx, t.owner, t.repo, opts)
		}
		if err != nil {
			return nil, fmt.Errorf("list runners of %s: %w", t, err)
		}
		for _, r := range rs.Runners {
			out = append(out, runnerFrom(r))
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	return out, nil
}

// RemoveRunner deregisters runner id from the scope. A runner running a job
// is ErrRunnerBusy (GitHub's 422), one that does not exist ErrRunnerNotFound.
func (a *API) RemoveRunner(ctx context.Context, scope pools.Scope, id int64) error {
	t, err := scopeTarget(scope)
	if err != nil {
		return err
	}
	if id <= 0 {
		return fmt.Errorf("remove runner %d from %s: %w", id, t, ErrInvalid)
	}
	if t.org != "" {
		_, err = a.client.Actions.RemoveOrganizationRunner(ctx, t.org, id)
	} else {
		_, err = a.client.Actions.RemoveRunner(ctx, t.owner, t.repo, id)
	}
	if err != nil {
		switch Classify(err).StatusCode {
		case http.StatusUnprocessableEntity:
			return fmt.Errorf("remove runner %d from %s: %w: %w", id, t, ErrRunnerBusy, err)
		case http.StatusNotFound:
			return fmt.Errorf("remove runner %d from %s: %w: %w", id, t, ErrRunnerNotFound, err)
		}
		return fmt.Errorf("remove runner %d from %s: %w", id, t, err)
	}
	return nil
}

// WebURL is the GitHub web address matching the API base URL:
// https://github.com for https://api.github.com/, https://HOST for GitHub
// Enterprise Server's https://HOST/api/v3/, and the API URL's origin
// otherwise (a test double).
func (c *Clients) WebURL() string {
	u := *c.base
	if strings.EqualFold(u.Host, "api.github.com") {
		return u.Scheme + "://github.com"
	}
	p := strings.TrimSuffix(u.Path, "/")
	p = strings.TrimSuffix(p, "/api/v3")
	if p == strings.TrimSuffix(u.Path, "/") {
		p = "" // not a GHES API path: the origin
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: p}).String()
}

// RunnerURL is the URL `config.sh --url` registers a persistent runner at:
// the organization's or the repository's web address.
func (c *Clients) RunnerURL(scope pools.Scope) (string, error) {
	t, err := scopeTarget(scope)
	if err != nil {
		return "", err
	}
	if t.org != "" {
		return c.WebURL() + "/" + t.org, nil
	}
	return c.WebURL() + "/" + t.owner + "/" + t.repo, nil
}
