package activities

import (
	"context"
	"errors"

	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
)

// RemoveRunnerInput names a runner of a pool to deregister.
type RemoveRunnerInput struct {
	Pool, RunnerName string
	// Repo is the repository of the job the runner was started for
	// (StartRunnerInput.Repo), which decides where it registered.
	Repo string `json:",omitempty"`
	// InstallationID is the GitHub App installation the runner was
	// registered with (StartRunnerInput.InstallationID; 0: the default).
	InstallationID int64 `json:",omitempty"`
}

// RemoveRunnerResult says what became of the runner.
type RemoveRunnerResult struct {
	Removed  bool // deregistered now
	Busy     bool // running a job: GitHub refused; try again after the job
	NotFound bool // no runner of that name (already gone)
}

// RemoveRunner deregisters the pool's runner named RunnerName from GitHub.
func (a *Runners) RemoveRunner(ctx context.Context, in RemoveRunnerInput) (RemoveRunnerResult, error) {
	p, err := a.pool(in.Pool)
	if err != nil {
		return RemoveRunnerResult{}, err
	}
	if in.RunnerName == "" {
		return RemoveRunnerResult{}, invalid("remove runner: empty runner name")
	}
	api, err := a.api(in.InstallationID)
	if err != nil {
		return RemoveRunnerResult{}, err
	}
	scope := p.RunnerScope(in.Repo)
	r, found, err := api.RunnerByName(ctx, scope, in.RunnerName)
	if err != nil {
		return RemoveRunnerResult{}, classifyGitHub(err)
	}
	if !found {
		return RemoveRunnerResult{NotFound: true}, nil
	}
	err = api.RemoveRunner(ctx, scope, r.ID)
	switch {
	case errors.Is(err, gh.ErrRunnerBusy):
		return RemoveRunnerResult{Busy: true}, nil
	case errors.Is(err, gh.ErrRunnerNotFound):
		return RemoveRunnerResult{NotFound: true}, nil
	case err != nil:
		return RemoveRunnerResult{}, classifyGitHub(err)
	}
	a.logger().InfoContext(ctx, "runner removed", "pool", p.Name, "runner", in.RunnerName, "runner_id", r.ID)
	return RemoveRunnerResult{Removed: true}, nil
}

// JobStatusInput names a GitHub Actions job.
type JobStatusInput struct {
	Owner, Repo    string
	JobID          int64
	InstallationID int64 // 0: the configured default installation
}

// JobStatusResult is a job as GitHub reports it now.
type JobStatusResult struct {
	Status     string // queued, in_progress, completed, waiting...
	Conclusion string // once completed: success, failure, cancelled...
	RunnerName string // the runner that took it, "" before
}

// JobStatus reads a job from GitHub (to check on a job whose runner has not
// picked it up, or whose webhook was missed).
func (a *Runners) JobStatus(ctx context.Context, in JobStatusInput) (JobStatusResult, error) {
	api, err := a.api(in.InstallationID)
	if err != nil {
		return JobStatusResult{}, err
	}
	status, conclusion, runner, err := api.WorkflowJob(ctx, in.Owner, in.Repo, in.JobID)
	if err != nil {
		return JobStatusResult{}, classifyGitHub(err)
	}
	return JobStatusResult{Status: status, Conclusion: conclusion, RunnerName: runner}, nil
}

// GitHubRunnerDirectory is GitHub as the Reconciler's RunnerDirectory, over
// the default installation; nil (no directory) in local mode. Removing a
// runner that is already gone succeeds.
func GitHubRunnerDirectory(c *gh.Clients) RunnerDirectory {
	if c == nil {
		return nil
	}
	return githubDirectory{c}
}

type githubDirectory struct{ c *gh.Clients }

func (d githubDirectory) ListRunners(ctx context.Context, scope pools.Scope) ([]RegisteredRunner, error) {
	api, err := d.c.API(0)
	if err != nil {
		return nil, err
	}
	rs, err := api.ListRunners(ctx, scope)
	if err != nil {
		return nil, err
	}
	out := make([]RegisteredRunner, 0, len(rs))
	for _, r := range rs {
		out = append(out, RegisteredRunner{ID: r.ID, Name: r.Name, Online: r.Online(), Busy: r.Busy})
	}
	return out, nil
}

func (d githubDirectory) RemoveRunner(ctx context.Context, scope pools.Scope, id int64) error {
	api, err := d.c.API(0)
	if err != nil {
		return err
	}
	if err := api.RemoveRunner(ctx, scope, id); err != nil && !errors.Is(err, gh.ErrRunnerNotFound) {
		return err
	}
	return nil
}
