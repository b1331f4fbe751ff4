package ghfixture

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

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
		"node_id":              installationNodeID(installationID),
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
