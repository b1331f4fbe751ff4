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
	"fmt"
	"hash/fnv"
	"strings"
	"time"
)

// ownerTypeOf is the type of a repository owner's account: Organization
// when the repository belongs to org, User otherwise.
func ownerTypeOf(org, owner string) string {
	if org != "" && strings.EqualFold(org, owner) {
		return "Organization"
	}
	return "User"
}

// addOrgAndInstallation adds "organization" when the repository belongs to
// org and "installation" when a GitHub App installation receives doc.
func addOrgAndInstallation(doc map[string]any, org string, installationID int64) {
	if org != "" {
		doc["organization"] = organization(org)
	}
	if installationID != 0 {
		doc["installation"] = map[string]any{"id": installationID, "node_id": installationNodeID(installationID)}
	}
}

func installationNodeID(installationID int64) string {
	return nodeID("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u", fmt.Sprint(installationID))
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
