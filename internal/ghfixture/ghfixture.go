// Package ghfixture builds GitHub webhook deliveries (pull_request,
// workflow_job, ping, installation) for a repository, pull request, commit or
// GitHub Actions job of our choosing: the end-to-end tests, the stand-in
// runner, `bench`, `chaos` and `starter` send them, signed, to a running
// Drydock, and the intake's unit tests edit them.
//
// The payloads are the project's own, written in code (nothing is read from
// disk, so a built binary works from any directory). They follow the shape
// GitHub documents under "Webhook events and payloads": every field Drydock
// reads, the fields around them that GitHub sends, and the nulls GitHub sends
// where a value is absent (runner_name of a queued job, closed_at of an open
// pull request), so the intake is tested against GitHub's shape and not only
// against what go-github would marshal.
package ghfixture

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"
)

// PR describes the pull request a pull_request delivery should be about.
type PR struct {
	Owner, Repo string
	// Org is the organization login when the base repository belongs to
	// one (the payload then carries "organization" and the owner's type is
	// Organization). Empty: a user's repository.
	Org     string
	Number  int
	HeadSHA string
	HeadRef string
	BaseRef string // default main
	// CloneURL is where the head commit can be fetched (a local path works
	// with the emulator); default https://github.com/<head owner>/<head repo>.git.
	CloneURL string
	// HeadOwner/HeadRepo differ from Owner/Repo for a pull request from a fork.
	HeadOwner, HeadRepo string
	Title               string // default "Update <head ref>"
	Sender              string // who acted; default the head owner
	Draft               bool
	Merged              bool // closed only
	Private             bool // the base repository is private
	Labels              []string
	// Label is the label a labeled or unlabeled delivery is about (default
	// for labeled: the last of Labels).
	Label string
	// PreviousTitle is the title before an edited delivery (default: the
	// title with " (draft)" appended).
	PreviousTitle  string
	InstallationID int64 // 0: no "installation" (a repository webhook)
}

// PullRequestActions are the pull_request actions PullRequest builds: the
// ones Drydock acts on and a few it must ignore.
var PullRequestActions = []string{
	"opened", "synchronize", "reopened", "labeled", "unlabeled", "closed", "edited",
	"ready_for_review", "converted_to_draft", "assigned", "unassigned", "review_requested", "locked", "unlocked",
}

// PullRequest builds the pull_request delivery GitHub sends for action on pr.
func PullRequest(action string, pr PR) ([]byte, error) {
	if !slices.Contains(PullRequestActions, action) {
		return nil, fmt.Errorf("ghfixture: no pull_request payload for action %q (have %s)", action, strings.Join(PullRequestActions, ", "))
	}
	if pr.Owner == "" || pr.Repo == "" || pr.Number <= 0 {
		return nil, fmt.Errorf("ghfixture: a pull request needs Owner, Repo and a positive Number (got %q/%q #%d)", pr.Owner, pr.Repo, pr.Number)
	}
	if pr.HeadOwner == "" {
		pr.HeadOwner, pr.HeadRepo = pr.Owner, pr.Repo
	}
	if pr.BaseRef == "" {
		pr.BaseRef = "main"
	}
	if pr.Title == "" {
		pr.Title = "Update " + pr.HeadRef
	}
	if pr.Sender == "" {
		pr.Sender = pr.HeadOwner
	}
	if pr.CloneURL == "" {
		pr.CloneURL = fmt.Sprintf("https://github.com/%s/%s.git", pr.HeadOwner, pr.HeadRepo)
	}
	now := time.Now().UTC().Truncate(time.Second)
	opened := now.Add(-time.Hour)

	ownerType := "User"
	if pr.Org != "" && strings.EqualFold(pr.Org, pr.Owner) {
		ownerType = "Organization"
	}
	// The base repository, as "repository" and as pull_request.base.repo;
	// the head repository is the same one unless the pull request comes
	// from a fork. CloneURL is the head repository's.
	sameRepo := pr.HeadOwner == pr.Owner && pr.HeadRepo == pr.Repo
	base := repository(pr.Owner, pr.Repo, ownerType, pr.Private, false, opened)
	headRepo := repository(pr.HeadOwner, pr.HeadRepo, "User", pr.Private, true, opened)
	if sameRepo {
		base["clone_url"] = pr.CloneURL
		headRepo = repository(pr.Owner, pr.Repo, ownerType, pr.Private, false, opened)
	}
	headRepo["clone_url"] = pr.CloneURL

	labels := []any{}
	for _, l := range pr.Labels {
		labels = append(labels, label(pr.Owner, pr.Repo, l))
	}
	state, closedAt, mergedAt, mergeSHA := "open", any(nil), any(nil), any(nil)
	merged := false
	if action == "closed" {
		state, closedAt = "closed", stamp(now)
		if pr.Merged {
			merged, mergedAt, mergeSHA = true, stamp(now), fakeSHA(pr.HeadSHA+"merge")
		}
	}
	api := fmt.Sprintf("https://api.github.com/repos/%s/%s", pr.Owner, pr.Repo)
	htmlURL := fmt.Sprintf("https://github.com/%s/%s/pull/%d", pr.Owner, pr.Repo, pr.Number)
	p := map[string]any{
		"url":                 fmt.Sprintf("%s/pulls/%d", api, pr.Number),
		"id":                  id("pr", pr.Owner, pr.Repo, fmt.Sprint(pr.Number)),
		"node_id":             nodeID("PR", pr.Owner, pr.Repo, fmt.Sprint(pr.Number)),
		"html_url":            htmlURL,
		"diff_url":            htmlURL + ".diff",
		"patch_url":           htmlURL + ".patch",
		"issue_url":           fmt.Sprintf("%s/issues/%d", api, pr.Number),
		"commits_url":         fmt.Sprintf("%s/pulls/%d/commits", api, pr.Number),
		"statuses_url":        fmt.Sprintf("%s/statuses/%s", api, pr.HeadSHA),
		"number":              pr.Number,
		"state":               state,
		"locked":              action == "locked",
		"title":               pr.Title,
		"user":                user(pr.HeadOwner, "User"),
		"body":                nil, // GitHub sends null for an empty description
		"created_at":          stamp(opened),
		"updated_at":          stamp(now),
		"closed_at":           closedAt,
		"merged_at":           mergedAt,
		"merge_commit_sha":    mergeSHA,
		"assignee":            nil,
		"assignees":           []any{},
		"requested_reviewers": []any{},
		"requested_teams":     []any{},
		"labels":              labels,
		"milestone":           nil,
		"draft":               pr.Draft,
		"head": map[string]any{
			"label": pr.HeadOwner + ":" + pr.HeadRef,
			"ref":   pr.HeadRef,
			"sha":   pr.HeadSHA,
			"user":  headRepo["owner"],
			"repo":  headRepo,
		},
		"base": map[string]any{
			"label": pr.Owner + ":" + pr.BaseRef,
			"ref":   pr.BaseRef,
			"sha":   fakeSHA(pr.Owner + "/" + pr.Repo + "@" + pr.BaseRef),
			"user":  user(pr.Owner, ownerType),
			"repo":  repository(pr.Owner, pr.Repo, ownerType, pr.Private, false, opened),
		},
		"author_association":    "CONTRIBUTOR",
		"auto_merge":            nil,
		"active_lock_reason":    nil,
		"merged":                merged,
		"mergeable":             nil,
		"rebaseable":            nil,
		"mergeable_state":       "unknown",
		"merged_by":             nil,
		"comments":              0,
		"review_comments":       0,
		"maintainer_can_modify": false,
		"commits":               1,
		"additions":             12,
		"deletions":             3,
		"changed_files":         2,
	}
	if sameRepo {
		p["author_association"] = "MEMBER"
	}
	doc := map[string]any{
		"action":       action,
		"number":       pr.Number,
		"pull_request": p,
		"repository":   base,
		"sender":       user(pr.Sender, "User"),
	}
	if pr.Org != "" {
		doc["organization"] = organization(pr.Org)
	}
	if pr.InstallationID != 0 {
		doc["installation"] = map[string]any{"id": pr.InstallationID, "node_id": nodeID("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u", fmt.Sprint(pr.InstallationID))}
	}
	switch action {
	case "synchronize":
		doc["before"] = fakeSHA(pr.HeadSHA + "^")
		doc["after"] = pr.HeadSHA
	case "labeled", "unlabeled":
		name := pr.Label
		if name == "" && action == "labeled" && len(pr.Labels) > 0 {
			name = pr.Labels[len(pr.Labels)-1]
		}
		if name == "" {
			return nil, fmt.Errorf("ghfixture: a %s delivery needs PR.Label", action)
		}
		doc["label"] = label(pr.Owner, pr.Repo, name)
	case "edited":
		from := pr.PreviousTitle
		if from == "" {
			from = pr.Title + " (draft)"
		}
		doc["changes"] = map[string]any{"title": map[string]any{"from": from}}
	case "assigned", "unassigned":
		doc["assignee"] = user(pr.Sender, "User")
	case "review_requested":
		doc["requested_reviewer"] = user("reviewer-"+pr.Owner, "User")
	}
	return json.Marshal(doc)
}

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
	created := job.CreatedAt
	if created.IsZero() {
		created = now
	}
	started := job.StartedAt
	if started.IsZero() && action == "in_progress" {
		started = now
	}
	if started.IsZero() {
		started = created
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
	ownerType := "User"
	if job.Org != "" && strings.EqualFold(job.Org, job.Owner) {
		ownerType = "Organization"
	}
	api := fmt.Sprintf("https://api.github.com/repos/%s/%s", job.Owner, job.Repo)
	headSHA := fakeSHA(fmt.Sprintf("%s/%s run %d", job.Owner, job.Repo, job.RunID))
	labels := make([]any, len(job.Labels))
	for i, l := range job.Labels {
		labels[i] = l
	}
	wj := map[string]any{
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
		"created_at":        stamp(created),
		"started_at":        stamp(started),
		"completed_at":      nil,
		"labels":            labels,
		"runner_id":         nil,
		"runner_name":       nil,
		"runner_group_id":   nil,
		"runner_group_name": nil,
		"steps":             []any{},
	}
	if job.RunnerName != "" {
		if job.RunnerGroupID == 0 {
			job.RunnerGroupID, job.RunnerGroupName = 1, "Default"
		}
		wj["runner_id"] = id("runner", job.RunnerName)%100000 + 1
		wj["runner_name"] = job.RunnerName
		wj["runner_group_id"] = job.RunnerGroupID
		wj["runner_group_name"] = job.RunnerGroupName
	}
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
	doc := map[string]any{
		"action":       action,
		"workflow_job": wj,
		"repository":   repository(job.Owner, job.Repo, ownerType, !job.Public, false, created.Add(-24*time.Hour)),
		"sender":       user(job.Sender, "User"),
	}
	if job.Org != "" {
		doc["organization"] = organization(job.Org)
	}
	if job.InstallationID != 0 {
		doc["installation"] = map[string]any{"id": job.InstallationID, "node_id": nodeID("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u", fmt.Sprint(job.InstallationID))}
	}
	return json.Marshal(doc)
}

// Ping builds the ping GitHub sends when a webhook is created on
// owner/repo (hookID names the hook).
func Ping(owner, repo string, hookID int64) []byte {
	created := time.Now().UTC().Truncate(time.Second)
	doc := map[string]any{
		"zen":     "Design for failure.",
		"hook_id": hookID,
		"hook": map[string]any{
			"type":   "Repository",
			"id":     hookID,
			"name":   "web",
			"active": true,
			"events": []any{"pull_request", "workflow_job"},
			"config": map[string]any{
				"content_type": "json",
				"insecure_ssl": "0",
				"url":          "https://drydock.example.com/webhook",
			},
			"updated_at":     stamp(created),
			"created_at":     stamp(created),
			"url":            fmt.Sprintf("https://api.github.com/repos/%s/%s/hooks/%d", owner, repo, hookID),
			"test_url":       fmt.Sprintf("https://api.github.com/repos/%s/%s/hooks/%d/test", owner, repo, hookID),
			"ping_url":       fmt.Sprintf("https://api.github.com/repos/%s/%s/hooks/%d/pings", owner, repo, hookID),
			"deliveries_url": fmt.Sprintf("https://api.github.com/repos/%s/%s/hooks/%d/deliveries", owner, repo, hookID),
			"last_response":  map[string]any{"code": nil, "status": "unused", "message": nil},
		},
		"repository": repository(owner, repo, "User", false, false, created.Add(-24*time.Hour)),
		"sender":     user(owner, "User"),
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}

// InstallationActions are the installation actions Installation builds.
var InstallationActions = []string{"created", "deleted", "suspend", "unsuspend", "new_permissions_accepted"}

// Installation builds the installation delivery a GitHub App receives for
// action on installation id of account (a user or organization login),
// covering repos (names under account).
func Installation(action string, installationID int64, account string, repos ...string) ([]byte, error) {
	if !slices.Contains(InstallationActions, action) {
		return nil, fmt.Errorf("ghfixture: no installation payload for action %q (want %s)", action, strings.Join(InstallationActions, ", "))
	}
	now := time.Now().UTC().Truncate(time.Second)
	var suspendedAt, suspendedBy any
	if action == "suspend" {
		suspendedAt, suspendedBy = stamp(now), user(account, "User")
	}
	repositories := []any{}
	for _, r := range repos {
		repositories = append(repositories, map[string]any{
			"id": id("repo", account, r), "node_id": nodeID("R", account, r),
			"name": r, "full_name": account + "/" + r, "private": false,
		})
	}
	inst := map[string]any{
		"id":                   installationID,
		"node_id":              nodeID("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u", fmt.Sprint(installationID)),
		"account":              user(account, "Organization"),
		"repository_selection": "selected",
		"access_tokens_url":    fmt.Sprintf("https://api.github.com/app/installations/%d/access_tokens", installationID),
		"repositories_url":     "https://api.github.com/installation/repositories",
		"html_url":             fmt.Sprintf("https://github.com/organizations/%s/settings/installations/%d", account, installationID),
		"app_id":               1000001,
		"app_slug":             "drydock",
		"target_id":            id("user", account),
		"target_type":          "Organization",
		"permissions": map[string]any{
			"actions": "read", "administration": "write", "checks": "read", "contents": "read",
			"deployments": "write", "issues": "write", "metadata": "read", "pull_requests": "write",
		},
		"events":                    []any{"pull_request", "workflow_job"},
		"created_at":                stamp(now.Add(-time.Hour)),
		"updated_at":                stamp(now),
		"single_file_name":          nil,
		"has_multiple_single_files": false,
		"single_file_paths":         []any{},
		"suspended_at":              suspendedAt,
		"suspended_by":              suspendedBy,
	}
	doc := map[string]any{
		"action":       action,
		"installation": inst,
		"repositories": repositories,
		"requester":    nil,
		"sender":       user(account, "User"),
	}
	return json.Marshal(doc)
}

func repository(owner, name, ownerType string, private, fork bool, created time.Time) map[string]any {
	html := fmt.Sprintf("https://github.com/%s/%s", owner, name)
	api := fmt.Sprintf("https://api.github.com/repos/%s/%s", owner, name)
	visibility := "public"
	if private {
		visibility = "private"
	}
	return map[string]any{
		"id":                id("repo", owner, name),
		"node_id":           nodeID("R", owner, name),
		"name":              name,
		"full_name":         owner + "/" + name,
		"private":           private,
		"owner":             user(owner, ownerType),
		"html_url":          html,
		"description":       nil,
		"fork":              fork,
		"url":               api,
		"pulls_url":         api + "/pulls{/number}",
		"git_url":           fmt.Sprintf("git://github.com/%s/%s.git", owner, name),
		"ssh_url":           fmt.Sprintf("git@github.com:%s/%s.git", owner, name),
		"clone_url":         html + ".git",
		"svn_url":           html,
		"homepage":          nil,
		"size":              412,
		"stargazers_count":  0,
		"watchers_count":    0,
		"language":          "Go",
		"has_issues":        true,
		"has_projects":      false,
		"has_wiki":          false,
		"forks_count":       0,
		"archived":          false,
		"disabled":          false,
		"open_issues_count": 1,
		"license":           nil,
		"allow_forking":     true,
		"is_template":       false,
		"topics":            []any{},
		"visibility":        visibility,
		"forks":             0,
		"open_issues":       1,
		"watchers":          0,
		"default_branch":    "main",
		"created_at":        stamp(created),
		"updated_at":        stamp(created),
		"pushed_at":         stamp(created),
	}
}

func user(login, typ string) map[string]any {
	return map[string]any{
		"login":       login,
		"id":          id("user", login),
		"node_id":     nodeID("U", login),
		"avatar_url":  fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", id("user", login)),
		"gravatar_id": "",
		"url":         "https://api.github.com/users/" + login,
		"html_url":    "https://github.com/" + login,
		"type":        typ,
		"site_admin":  false,
	}
}

func organization(login string) map[string]any {
	return map[string]any{
		"login":       login,
		"id":          id("user", login),
		"node_id":     nodeID("O", login),
		"url":         "https://api.github.com/orgs/" + login,
		"repos_url":   "https://api.github.com/orgs/" + login + "/repos",
		"hooks_url":   "https://api.github.com/orgs/" + login + "/hooks",
		"members_url": "https://api.github.com/orgs/" + login + "/members{/member}",
		"avatar_url":  fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", id("user", login)),
		"description": nil,
	}
}

func label(owner, repo, name string) map[string]any {
	return map[string]any{
		"id":          id("label", owner, repo, name),
		"node_id":     nodeID("LA", owner, repo, name),
		"url":         fmt.Sprintf("https://api.github.com/repos/%s/%s/labels/%s", owner, repo, name),
		"name":        name,
		"color":       "0e8a16",
		"default":     false,
		"description": nil,
	}
}

func step(name string, number int, status string, conclusion any, started time.Time, completed any) map[string]any {
	if t, ok := completed.(time.Time); ok {
		completed = stamp(t)
	}
	return map[string]any{
		"name": name, "status": status, "conclusion": conclusion, "number": number,
		"started_at": stamp(started), "completed_at": completed,
	}
}

// stamp is GitHub's timestamp form: RFC 3339 in UTC, whole seconds.
func stamp(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// id derives a stable positive ID from the parts, so the same repository or
// user has the same ID in every delivery, as on GitHub.
func id(parts ...string) int64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(strings.ToLower(p)))
		h.Write([]byte{0})
	}
	return int64(h.Sum64()>>34) + 1
}

func nodeID(kind string, parts ...string) string {
	return fmt.Sprintf("%s_kw%x", kind, id(parts...))
}

// fakeSHA is a stable 40-hex object name derived from seed (for the commits
// a delivery mentions but the test does not care about).
func fakeSHA(seed string) string {
	h := fnv.New128a()
	h.Write([]byte(seed))
	s := fmt.Sprintf("%x", h.Sum(nil))
	return s + s[:8]
}
