// Package ghfixture turns the real GitHub webhook payloads kept in
// ../shared/fixtures/github-webhooks (octokit/webhooks, MIT) into deliveries
// for a repository, pull request and commit of our choosing: the end-to-end
// tests and `starter demo` send them, signed, to a running Drydock.
package ghfixture

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
