package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/ghfixture"
)

// work runs one claimed job: in_progress delivery, the job's duration,
// completion on the double, completed delivery.
func (r *runner) work(ctx context.Context, c claim, name string) error {
	job := r.claimedJob(c)
	if name == "" {
		name = job.RunnerName
	}
	duration := time.Duration(max(job.DurationMS, c.DurationMS)) * time.Millisecond
	conclusion := cmp.Or(r.o.conclusion, c.Conclusion, "success")
	log := r.log.With("job_id", job.ID, "repo", job.Owner+"/"+job.Repo)
	log.Info("job claimed", "name", job.Name, "labels", job.Labels, "duration", duration)

	fj := ghfixture.Job{ID: job.ID, RunID: job.RunID, Name: job.Name, WorkflowName: job.WorkflowName, Owner: job.Owner, Repo: job.Repo,
		Org: job.Org, Labels: job.Labels, RunnerName: name, InstallationID: job.InstallationID, CreatedAt: job.CreatedAt,
		StartedAt: time.Now()} // picked up now: in_progress and completed both say so
	var failed error
	if err := r.deliver(ctx, "in_progress", fj); err != nil {
		log.Error("in_progress delivery failed", "err", err)
		failed = err
	}
	if err := r.step(ctx, job.ID); err != nil {
		log.Error("job step failed", "err", err)
		failed = err
	}
	conclusion, err := r.runJob(ctx, log, job.ID, job.Repo, duration, conclusion)
	if err != nil {
		return err
	}
	if err := r.complete(ctx, job.ID, conclusion); err != nil {
		return fmt.Errorf("completing the job: %w", err)
	}
	fj.Conclusion = conclusion
	if err := r.deliver(ctx, "completed", fj); err != nil {
		log.Error("completed delivery failed", "err", err)
		failed = err
	}
	log.Info("job done", "conclusion", conclusion)
	return failed
}

// claimedJob is the claim's job with what the double left out filled in:
// owner and repo from its URLs, the org from the runner's scope, the
// installation from -installation-id.
func (r *runner) claimedJob(c claim) claimedJob {
	job := c.Job
	if job.Owner == "" || job.Repo == "" {
		job.Owner, job.Repo = repoFromURL(job.RunURL)
		if job.Owner == "" {
			job.Owner, job.Repo = repoFromURL(job.URL)
		}
	}
	if job.Org == "" && r.cfg.Scope.Kind == "org" {
		job.Org = r.cfg.Scope.Org
	}
	if job.InstallationID == 0 {
		job.InstallationID = r.o.installationID
	}
	return job
}

// runJob "runs" job id of repo for duration: its steps (-job-command),
// the rest of the duration, the job-completed hook. A failed step or hook
// makes the conclusion failure; the error is a stop (ctx) mid-job.
func (r *runner) runJob(ctx context.Context, log *slog.Logger, id int64, repo string, duration time.Duration, conclusion string) (string, error) {
	started := time.Now()
	if r.o.jobCommand != "" {
		if err := r.runSteps(ctx, id, repo); err != nil {
			log.Error("job steps failed", "err", err)
			conclusion = "failure"
		}
	}
	select {
	case <-time.After(duration - time.Since(started)):
	case <-ctx.Done():
		return conclusion, fmt.Errorf("stopped while running the job: %w", ctx.Err())
	}
	if err := r.jobCompletedHook(ctx, id, repo); err != nil {
		log.Error("job-completed hook failed", "err", err)
		conclusion = "failure"
	}
	return conclusion, nil
}

// step runs the job's one step (with -step-env-dir): a child process
// with this runner's environment, as actions/runner's job steps inherit the
// runner's, which writes it to <dir>/job-<id>.env (whole, via a rename).
func (r *runner) step(ctx context.Context, jobID int64) error {
	if r.o.stepEnvDir == "" {
		return nil
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", "env").Output()
	if err != nil {
		return fmt.Errorf("step: %w", err)
	}
	file := filepath.Join(r.o.stepEnvDir, fmt.Sprintf("job-%d.env", jobID))
	if err := os.WriteFile(file+".part", out, 0o600); err != nil {
		return err
	}
	return os.Rename(file+".part", file)
}

// runSteps runs -job-command as actions/runner runs a job's steps: in the
// workspace $HOME/actions-runner/_work/<repo>/<repo>, with RUNNER_TEMP
// $HOME/actions-runner/_work/_temp. Its output goes to the runner's
// output; whatever it starts in the background may outlive it.
func (r *runner) runSteps(ctx context.Context, jobID int64, repo string) error {
	ws, temp, err := workspace(repo)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", r.o.jobCommand)
	cmd.Dir = ws
	cmd.Env = append(os.Environ(), "GITHUB_WORKSPACE="+ws, "RUNNER_TEMP="+temp, fmt.Sprintf("FAKERUNNER_JOB_ID=%d", jobID))
	// Files, not pipes: the runner does not wait for what the steps leave
	// running in the background.
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// jobCompletedHook runs the script ACTIONS_RUNNER_HOOK_JOB_COMPLETED names
// (if set), as actions/runner does after a job's steps and before it
// reports the job complete: in the job's workspace, with its variables; a
// failing hook fails the job.
func (r *runner) jobCompletedHook(ctx context.Context, jobID int64, repo string) error {
	hook := os.Getenv("ACTIONS_RUNNER_HOOK_JOB_COMPLETED")
	if hook == "" {
		return nil
	}
	ws, temp, err := workspace(repo)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "sh", hook)
	cmd.Dir = ws
	cmd.Env = append(os.Environ(), "GITHUB_WORKSPACE="+ws, "RUNNER_TEMP="+temp, fmt.Sprintf("FAKERUNNER_JOB_ID=%d", jobID))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// loadDotEnv sets the KEY=VALUE lines of a runner's .env file (if there is
// one) in this process's environment.
func loadDotEnv(path string) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && k != "" && !strings.HasPrefix(k, "#") {
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	return nil
}

// workspace makes a job's workspace $HOME/actions-runner/_work/<repo>/<repo>
// and its RUNNER_TEMP $HOME/actions-runner/_work/_temp (when missing).
func workspace(repo string) (ws, temp string, err error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", "", err
	}
	if repo == "" {
		repo = "repo"
	}
	work := filepath.Join(home, "actions-runner", "_work")
	ws, temp = filepath.Join(work, repo, repo), filepath.Join(work, "_temp")
	for _, d := range []string{ws, temp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", err
		}
	}
	return ws, temp, nil
}

// register is config.sh: it registers a persistent runner with a
// registration token and writes the runner's config to -config-file.
func (r *runner) register(ctx context.Context, stderr io.Writer) int {
	if r.o.name == "" || r.o.labels == "" || r.o.configFile == "" || r.o.token == "" {
		fmt.Fprintln(stderr, "fakerunner: -configure needs -name, -labels, -config-file and a token (-token or ACTIONS_RUNNER_INPUT_TOKEN)")
		return 2
	}
	body, _ := json.Marshal(map[string]any{"token": r.o.token, "name": r.o.name, "labels": strings.Split(r.o.labels, ",")})
	var out []byte
	err := r.retry(ctx, "register runner", func() (int, []byte, error) {
		status, b, err := r.post(ctx, r.o.github+"/_test/runners/register", nil, body)
		out = b
		return status, b, err
	})
	if err != nil {
		fmt.Fprintln(stderr, "fakerunner:", err)
		return 1
	}
	var ans struct {
		RunnerConfig string `json:"runner_config"`
	}
	if err := json.Unmarshal(out, &ans); err != nil || ans.RunnerConfig == "" {
		fmt.Fprintf(stderr, "fakerunner: register answer %q: no runner config\n", out)
		return 1
	}
	if err := os.WriteFile(r.o.configFile, []byte(ans.RunnerConfig), 0o600); err != nil {
		fmt.Fprintln(stderr, "fakerunner:", err)
		return 1
	}
	r.log.Info("persistent runner registered", "runner", r.o.name)
	return 0
}

// persistentLoop is a persistent runner's service: it takes job after job
// until it is stopped (its machine deleted), polling while none is queued.
func (r *runner) persistentLoop(ctx context.Context, stderr io.Writer) int {
	b, err := os.ReadFile(r.o.persistent)
	if err != nil {
		fmt.Fprintln(stderr, "fakerunner:", err)
		return 2
	}
	r.jit = strings.TrimSpace(string(b))
	if r.cfg, err = decodeJIT(r.jit); err != nil {
		fmt.Fprintf(stderr, "fakerunner: %s: %v\n", r.o.persistent, err)
		return 2
	}
	r.log = r.log.With("runner", r.cfg.Name, "mode", "persistent")
	// Like actions/runner, the service reads the runner directory's .env
	// (KEY=VALUE lines) into its environment when it starts.
	if err := loadDotEnv(filepath.Join(filepath.Dir(r.o.persistent), ".env")); err != nil {
		fmt.Fprintln(stderr, "fakerunner:", err)
		return 2
	}
	r.log.Info("listening for jobs", "github", r.o.github)
	for ctx.Err() == nil {
		c, ok, err := r.claim(ctx, time.Minute)
		switch {
		case err != nil && errors.Is(err, errRefused):
			r.log.Error("runner refused; exiting", "err", err)
			return 1
		case err != nil:
			r.log.Warn("claim failed; retrying", "err", err)
			continue
		case !ok:
			continue
		}
		if err := r.work(ctx, c, r.cfg.Name); err != nil {
			r.log.Error("job failed", "err", err)
		}
	}
	return 0
}

// repoFromURL finds owner and repo in a REST URL (.../repos/{owner}/{repo}/...).
func repoFromURL(s string) (string, string) {
	_, rest, ok := strings.Cut(s, "/repos/")
	if !ok {
		return "", ""
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 2 {
		return "", ""
	}
	return parts[0], parts[1]
}
