package ghfixture

import (
	"encoding/json"
	"fmt"
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
	pr = pr.withDefaults()
	now := time.Now().UTC().Truncate(time.Second)
	opened := now.Add(-time.Hour)

	ownerType := ownerTypeOf(pr.Org, pr.Owner)
	base, headRepo := pr.repositories(ownerType, opened)
	p := pullRequestObject(action, pr, ownerType, headRepo, now, opened)
	doc := map[string]any{
		"action":       action,
		"number":       pr.Number,
		"pull_request": p,
		"repository":   base,
		"sender":       user(pr.Sender, "User"),
	}
	addOrgAndInstallation(doc, pr.Org, pr.InstallationID)
	if err := addActionFields(doc, action, pr); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

// withDefaults fills the fields a PR may leave empty.
func (pr PR) withDefaults() PR {
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
	return pr
}

// sameRepo reports whether the pull request's head is in the base
// repository (not a fork).
func (pr PR) sameRepo() bool { return pr.HeadOwner == pr.Owner && pr.HeadRepo == pr.Repo }

// repositories are the base repository, as "repository" and as
// pull_request.base.repo, and the head repository: the same one unless the
// pull request comes from a fork. CloneURL is the head repository's.
func (pr PR) repositories(ownerType string, opened time.Time) (base, headRepo map[string]any) {
	base = repository(pr.Owner, pr.Repo, ownerType, pr.Private, false, opened)
	headRepo = repository(pr.HeadOwner, pr.HeadRepo, "User", pr.Private, true, opened)
	if pr.sameRepo() {
		base["clone_url"] = pr.CloneURL
		headRepo = repository(pr.Owner, pr.Repo, ownerType, pr.Private, false, opened)
	}
	headRepo["clone_url"] = pr.CloneURL
	return base, headRepo
}

// closing is what a closed delivery changes in the pull request: its state,
// when it closed and, when merged, the merge.
type closing struct {
	state                        string
	closedAt, mergedAt, mergeSHA any
	merged                       bool
}

func closingOf(action string, pr PR, now time.Time) closing {
	c := closing{state: "open"}
	if action == "closed" {
		c.state, c.closedAt = "closed", stamp(now)
		if pr.Merged {
			c.merged, c.mergedAt, c.mergeSHA = true, stamp(now), fakeSHA(pr.HeadSHA+"merge")
		}
	}
	return c
}

// pullRequestObject is the delivery's "pull_request".
func pullRequestObject(action string, pr PR, ownerType string, headRepo map[string]any, now, opened time.Time) map[string]any {
	labels := []any{}
	for _, l := range pr.Labels {
		labels = append(labels, label(pr.Owner, pr.Repo, l))
	}
	c := closingOf(action, pr, now)
	head, base := pr.refs(ownerType, headRepo, opened)
	api := fmt.Sprintf("https://api.github.com/repos/%s/%s", pr.Owner, pr.Repo)
	htmlURL := fmt.Sprintf("https://github.com/%s/%s/pull/%d", pr.Owner, pr.Repo, pr.Number)
	p := map[string]any{
		"url":                   fmt.Sprintf("%s/pulls/%d", api, pr.Number),
		"id":                    id("pr", pr.Owner, pr.Repo, fmt.Sprint(pr.Number)),
		"node_id":               nodeID("PR", pr.Owner, pr.Repo, fmt.Sprint(pr.Number)),
		"html_url":              htmlURL,
		"diff_url":              htmlURL + ".diff",
		"patch_url":             htmlURL + ".patch",
		"issue_url":             fmt.Sprintf("%s/issues/%d", api, pr.Number),
		"commits_url":           fmt.Sprintf("%s/pulls/%d/commits", api, pr.Number),
		"statuses_url":          fmt.Sprintf("%s/statuses/%s", api, pr.HeadSHA),
		"number":                pr.Number,
		"state":                 c.state,
		"locked":                action == "locked",
		"title":                 pr.Title,
		"user":                  user(pr.HeadOwner, "User"),
		"body":                  nil, // GitHub sends null for an empty description
		"created_at":            stamp(opened),
		"updated_at":            stamp(now),
		"closed_at":             c.closedAt,
		"merged_at":             c.mergedAt,
		"merge_commit_sha":      c.mergeSHA,
		"assignee":              nil,
		"assignees":             []any{},
		"requested_reviewers":   []any{},
		"requested_teams":       []any{},
		"labels":                labels,
		"milestone":             nil,
		"draft":                 pr.Draft,
		"head":                  head,
		"base":                  base,
		"author_association":    "CONTRIBUTOR",
		"auto_merge":            nil,
		"active_lock_reason":    nil,
		"merged":                c.merged,
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
	if pr.sameRepo() {
		p["author_association"] = "MEMBER"
	}
	return p
}

// refs are the pull request's "head" and "base".
func (pr PR) refs(ownerType string, headRepo map[string]any, opened time.Time) (head, base map[string]any) {
	head = map[string]any{
		"label": pr.HeadOwner + ":" + pr.HeadRef,
		"ref":   pr.HeadRef,
		"sha":   pr.HeadSHA,
		"user":  headRepo["owner"],
		"repo":  headRepo,
	}
	base = map[string]any{
		"label": pr.Owner + ":" + pr.BaseRef,
		"ref":   pr.BaseRef,
		"sha":   fakeSHA(pr.Owner + "/" + pr.Repo + "@" + pr.BaseRef),
		"user":  user(pr.Owner, ownerType),
		"repo":  repository(pr.Owner, pr.Repo, ownerType, pr.Private, false, opened),
	}
	return head, base
}

// addActionFields adds the top-level fields only some actions carry.
func addActionFields(doc map[string]any, action string, pr PR) error {
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
			return fmt.Errorf("ghfixture: a %s delivery needs PR.Label", action)
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
	return nil
}
