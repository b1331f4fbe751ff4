package ghfixture

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Job describes the GitHub Actions job a workflow_job delivery should be about.
type Job struct {
	ID, RunID   int64
	Name        string
	Owner, Repo string
	// Org is the organization login when the repository belongs to one:
	// the payload then carries "organization" and the owner's type is
	// Organization. Empty: a user's repository, no "organization".
	Org string
	// Public makes the repository public ("private": false, "visibility":
	// "public"); default private, as a self-hosted runner pool's
	// repositories are unless it sets allow_public.
	Public bool
	Labels []string
	// RunnerName is the runner GitHub reports (in_progress, completed);
	// empty sends null, as GitHub does for queued jobs.
	RunnerName string
	// RunnerGroupID/RunnerGroupName of that runner (default 1, "Default").
	RunnerGroupID   int64
	RunnerGroupName string
	// Conclusion of a completed job (default success); ignored otherwise.
	Conclusion     string
	InstallationID int64 // 0: no "installation"
	// WorkflowName (default "CI") and HeadBranch (default main).
	WorkflowName, HeadBranch string
	// CreatedAt (default now) is when the job was queued; completed_at is
	// now for completed jobs.
	CreatedAt time.Time
	// StartedAt is when a runner picked the job up: default now for
	// in_progress (the delivery GitHub sends at that moment), CreatedAt
	// otherwise.
	StartedAt time.Time
	// Sender is who triggered the run (default the owner).
	Sender string
}

// WorkflowJobActions are the workflow_job actions WorkflowJob builds.
var WorkflowJobActions = []string{"queued", "waiting", "in_progress", "completed"}

// WorkflowJob builds the workflow_job delivery GitHub sends for action
// (queued, waiting, in_progress or completed) about job.
func WorkflowJob(action string, job Job) ([]byte, error) {
	if !slices.Contains(WorkflowJobActions, action) {
		return nil, fmt.Errorf("ghfixture: no workflow_job payload for action %q (want %s)", action, strings.Join(WorkflowJobActions, ", "))
	}
	if job.Owner == "" || job.Repo == "" {
		return nil, fmt.Errorf("ghfixture: a workflow job needs Owner and Repo")
	}
	now := time.Now().UTC().Truncate(time.Second)
	job = job.withDefaults(action, now)
	wj := workflowJobObject(action, job)
	addRunner(wj, job)
	addProgress(wj, action, job, now)
	doc := map[string]any{
		"action":       action,
		"workflow_job": wj,
		"repository":   repository(job.Owner, job.Repo, ownerTypeOf(job.Org, job.Owner), !job.Public, false, job.CreatedAt.Add(-24*time.Hour)),
		"sender":       user(job.Sender, "User"),
	}
	addOrgAndInstallation(doc, job.Org, job.InstallationID)
	return json.Marshal(doc)
}

// withDefaults fills the fields a Job may leave empty, CreatedAt and
// StartedAt included (as of now, for a delivery about action).
func (job Job) withDefaults(action string, now time.Time) Job {
	if job.CreatedAt.IsZero() {
		job.CreatedAt = now
	}
	if job.StartedAt.IsZero() && action == "in_progress" {
		job.StartedAt = now
	}
	if job.StartedAt.IsZero() {
		job.StartedAt = job.CreatedAt
	}
	if job.WorkflowName == "" {
		job.WorkflowName = "CI"
	}
	if job.HeadBranch == "" {
		job.HeadBranch = "main"
	}
	if job.Sender == "" {
		job.Sender = job.Owner
	}
	return job
}

// workflowJobObject is the delivery's "workflow_job" as GitHub sends it for
// a queued job: no runner, no conclusion, no steps.
func workflowJobObject(action string, job Job) map[string]any {
	api := fmt.Sprintf("https://api.github.com/repos/%s/%s", job.Owner, job.Repo)
	headSHA := fakeSHA(fmt.Sprintf("%s/%s run %d", job.Owner, job.Repo, job.RunID))
	labels := make([]any, len(job.Labels))
	for i, l := range job.Labels {
		labels[i] = l
	}
	return map[string]any{
		"id":                job.ID,
		"run_id":            job.RunID,
		"run_attempt":       1,
		"workflow_name":     job.WorkflowName,
		"head_branch":       job.HeadBranch,
		"head_sha":          headSHA,
		"node_id":           nodeID("CR", fmt.Sprint(job.ID)),
		"name":              job.Name,
		"url":               fmt.Sprintf("%s/actions/jobs/%d", api, job.ID),
		"run_url":           fmt.Sprintf("%s/actions/runs/%d", api, job.RunID),
		"check_run_url":     fmt.Sprintf("%s/check-runs/%d", api, job.ID),
		"html_url":          fmt.Sprintf("https://github.com/%s/%s/actions/runs/%d/job/%d", job.Owner, job.Repo, job.RunID, job.ID),
		"status":            action,
		"conclusion":        nil,
		"created_at":        stamp(job.CreatedAt),
		"started_at":        stamp(job.StartedAt),
		"completed_at":      nil,
		"labels":            labels,
		"runner_id":         nil,
		"runner_name":       nil,
		"runner_group_id":   nil,
		"runner_group_name": nil,
		"steps":             []any{},
	}
}

// addRunner sets the runner fields of wj when the job names its runner.
func addRunner(wj map[string]any, job Job) {
	if job.RunnerName == "" {
		return
	}
	if job.RunnerGroupID == 0 {
		job.RunnerGroupID, job.RunnerGroupName = 1, "Default"
	}
	wj["runner_id"] = id("runner", job.RunnerName)%100000 + 1
	wj["runner_name"] = job.RunnerName
	wj["runner_group_id"] = job.RunnerGroupID
	wj["runner_group_name"] = job.RunnerGroupName
}

// addProgress sets the steps (and, once completed, the conclusion) of an
// in_progress or completed job.
func addProgress(wj map[string]any, action string, job Job, now time.Time) {
	started := job.StartedAt
	switch action {
	case "in_progress":
		wj["steps"] = []any{
			step("Set up job", 1, "completed", "success", started, started),
			step("Run actions/checkout@v4", 2, "in_progress", nil, started, nil),
		}
	case "completed":
		c := job.Conclusion
		if c == "" {
			c = "success"
		}
		wj["conclusion"] = c
		wj["completed_at"] = stamp(now)
		wj["steps"] = []any{
			step("Set up job", 1, "completed", "success", started, started),
			step("Run actions/checkout@v4", 2, "completed", "success", started, now),
			step("Run make test", 3, "completed", c, started, now),
			step("Complete job", 4, "completed", "success", now, now),
		}
	}
}
