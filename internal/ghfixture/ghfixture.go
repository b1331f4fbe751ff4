// Package ghfixture turns the real GitHub webhook payloads kept in
// ../shared/fixtures/github-webhooks (octokit/webhooks, MIT) into deliveries
// for a repository, pull request and commit, or a GitHub Actions job, of our
// choosing: the end-to-end tests, the stand-in runner and `starter` send
// them, signed, to a running Drydock.
package ghfixture

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DefaultDir is where the fixtures live relative to the repository root.
const DefaultDir = "../shared/fixtures/github-webhooks"

// PR describes the pull request a pull_request delivery should be about.
type PR struct {
	Owner, Repo string
	Number      int
	HeadSHA     string
	HeadRef     string
	BaseRef     string
	// CloneURL is where the head commit can be fetched (a local path works with the emulator).
	CloneURL string
	// HeadOwner/HeadRepo differ from Owner/Repo for a pull request from a fork.
	HeadOwner, HeadRepo string
	Draft               bool
	Merged              bool
	Labels              []string
}

// PullRequest loads pull_request/<action>.payload.json from dir and rewrites
// it to describe pr. action is opened, synchronize, closed, reopened, labeled...
func PullRequest(dir, action string, pr PR) ([]byte, error) {
	file := filepath.Join(dir, "pull_request", action+".payload.json")
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("webhook fixture: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("webhook fixture %s: %w", file, err)
	}
	if pr.HeadOwner == "" {
		pr.HeadOwner, pr.HeadRepo = pr.Owner, pr.Repo
	}
	if pr.BaseRef == "" {
		pr.BaseRef = "main"
	}
	repo := obj(doc, "repository")
	setRepo(repo, pr.Owner, pr.Repo)
	repo["clone_url"] = pr.CloneURL
	doc["number"] = pr.Number
	p := obj(doc, "pull_request")
	p["number"] = pr.Number
	p["draft"] = pr.Draft
	p["merged"] = pr.Merged
	if action == "closed" {
		p["state"] = "closed"
	} else {
		p["state"] = "open"
	}
	p["html_url"] = fmt.Sprintf("https://github.com/%s/%s/pull/%d", pr.Owner, pr.Repo, pr.Number)
	labels := []any{}
	for _, l := range pr.Labels {
		labels = append(labels, map[string]any{"name": l})
	}
	p["labels"] = labels
	head := obj(p, "head")
	head["sha"] = pr.HeadSHA
	head["ref"] = pr.HeadRef
	head["label"] = pr.HeadOwner + ":" + pr.HeadRef
	hrepo := obj(head, "repo")
	setRepo(hrepo, pr.HeadOwner, pr.HeadRepo)
	hrepo["clone_url"] = pr.CloneURL
	base := obj(p, "base")
	base["ref"] = pr.BaseRef
	setRepo(obj(base, "repo"), pr.Owner, pr.Repo)
	if action == "synchronize" {
		doc["after"] = pr.HeadSHA
	}
	return json.Marshal(doc)
}

func obj(m map[string]any, key string) map[string]any {
	if v, ok := m[key].(map[string]any); ok {
		return v
	}
	v := map[string]any{}
	m[key] = v
	return v
}

func setRepo(r map[string]any, owner, name string) {
	r["name"] = name
	r["full_name"] = owner + "/" + name
	obj(r, "owner")["login"] = owner
}

// Load reads any fixture (e.g. "ping/payload.json") unchanged.
func Load(dir, rel string) ([]byte, error) {
	return os.ReadFile(filepath.Join(dir, rel))
}

// Job describes the GitHub Actions job a workflow_job delivery should be about.
type Job struct {
	ID, RunID   int64
	Name        string
	Owner, Repo string
	// Org is the organization login when the repository belongs to one:
	// the payload then carries "organization" and the owner's type is
	// Organization. Empty: a user's repository, no "organization".
	Org    string
	Labels []string
	// RunnerName is the runner GitHub reports (in_progress, completed);
	// empty sends null, as GitHub does for queued jobs.
	RunnerName string
	// Conclusion of a completed job (default success); ignored otherwise.
	Conclusion     string
	InstallationID int64 // 0: no "installation"
	// WorkflowName, if set, replaces the fixture's.
	WorkflowName string
	// CreatedAt (default now) is when the job was queued; completed_at is
	// now for completed jobs.
	CreatedAt time.Time
	// StartedAt is when a runner picked the job up: default now for
	// in_progress (the delivery GitHub sends at that moment), CreatedAt
	// otherwise.
	StartedAt time.Time
}

// workflowJobFixtures is the fixture each action is built from.
var workflowJobFixtures = map[string]string{
	"queued":      "queued.payload.json",
	"waiting":     "waiting.payload.json",
	"in_progress": "in_progress.payload.json",
	"completed":   "completed.success.with-organization.payload.json",
}

// WorkflowJob loads the workflow_job fixture for action (queued, waiting,
// in_progress or completed) from dir and rewrites it to describe job.
func WorkflowJob(dir, action string, job Job) ([]byte, error) {
	name, ok := workflowJobFixtures[action]
	if !ok {
		return nil, fmt.Errorf("webhook fixture: no workflow_job fixture for action %q (want queued, waiting, in_progress or completed)", action)
	}
	file := filepath.Join(dir, "workflow_job", name)
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("webhook fixture: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("webhook fixture %s: %w", file, err)
	}
	doc["action"] = action
	repo := obj(doc, "repository")
	setRepo(repo, job.Owner, job.Repo)
	repo["html_url"] = fmt.Sprintf("https://github.com/%s/%s", job.Owner, job.Repo)
	repo["url"] = fmt.Sprintf("https://api.github.com/repos/%s/%s", job.Owner, job.Repo)
	owner := obj(repo, "owner")
	if job.Org != "" {
		o := obj(doc, "organization")
		o["login"] = job.Org
		o["url"] = "https://api.github.com/orgs/" + job.Org
		if job.Org == job.Owner {
			owner["type"] = "Organization"
		}
	} else {
		delete(doc, "organization")
		owner["type"] = "User"
	}
	if job.InstallationID != 0 {
		obj(doc, "installation")["id"] = job.InstallationID
	} else {
		delete(doc, "installation")
	}
	created := job.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	stamp := created.UTC().Truncate(time.Second).Format(time.RFC3339)

	wj := obj(doc, "workflow_job")
	wj["id"] = job.ID
	wj["run_id"] = job.RunID
	wj["name"] = job.Name
	if job.WorkflowName != "" {
		wj["workflow_name"] = job.WorkflowName
	}
	labels := make([]any, len(job.Labels))
	for i, l := range job.Labels {
		labels[i] = l
	}
	wj["labels"] = labels
	wj["status"] = action
	wj["created_at"] = stamp
	started := job.StartedAt
	if started.IsZero() && action == "in_progress" {
		started = time.Now()
	}
	if started.IsZero() {
		started = created
	}
	wj["started_at"] = started.UTC().Truncate(time.Second).Format(time.RFC3339)
	wj["completed_at"] = nil
	wj["conclusion"] = nil
	if action == "completed" {
		c := job.Conclusion
		if c == "" {
			c = "success"
		}
		wj["conclusion"] = c
		wj["completed_at"] = time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	}
	if job.RunnerName != "" {
		wj["runner_name"] = job.RunnerName
		wj["runner_group_id"] = 1
		wj["runner_group_name"] = "Default"
	} else {
		for _, k := range []string{"runner_id", "runner_name", "runner_group_id", "runner_group_name"} {
			wj[k] = nil
		}
	}
	api := fmt.Sprintf("https://api.github.com/repos/%s/%s", job.Owner, job.Repo)
	wj["run_url"] = fmt.Sprintf("%s/actions/runs/%d", api, job.RunID)
	wj["url"] = fmt.Sprintf("%s/actions/jobs/%d", api, job.ID)
	wj["check_run_url"] = fmt.Sprintf("%s/check-runs/%d", api, job.ID)
	wj["html_url"] = fmt.Sprintf("https://github.com/%s/%s/actions/runs/%d/job/%d", job.Owner, job.Repo, job.RunID, job.ID)
	return json.Marshal(doc)
}
