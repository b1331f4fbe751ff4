package githubtest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// PullRequest is the state of a pull request the double knows. Its JSON is
// the part of GitHub's pull request object Drydock reads.
type PullRequest struct {
	Number  int
	State   string // "open" or "closed"
	Merged  bool
	HeadSHA string
	HeadRef string
	Labels  []string // label names
}

// SetPullRequest records (or replaces) pull request pr.Number of owner/repo,
// creating the repository if needed. Unknown pull requests answer 404.
func (s *Server) SetPullRequest(owner, repo string, pr PullRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repo(owner, repo)
	if r.pulls == nil {
		r.pulls = map[int]PullRequest{}
	}
	r.pulls[pr.Number] = pr
}

func (s *Server) getPullRequest(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoFor(c)
	if r == nil {
		return
	}
	n, err := strconv.Atoi(c.r.PathValue("pull_number"))
	pr, ok := r.pulls[n]
	if err != nil || !ok {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return
	}
	state := pr.State
	if state == "" {
		state = "open"
	}
	var mergedAt any
	if pr.Merged {
		mergedAt = now()
	}
	writeJSON(c.w, http.StatusOK, map[string]any{
		"url":       fmt.Sprintf("%s/pulls/%d", r.apiURL(c), n),
		"html_url":  fmt.Sprintf("%s/pull/%d", r.htmlURL(c), n),
		"number":    n,
		"state":     state,
		"merged":    pr.Merged,
		"merged_at": mergedAt,
		"head":      map[string]any{"sha": pr.HeadSHA, "ref": pr.HeadRef},
		"base":      map[string]any{"ref": r.defaultBranch},
		"labels":    labelsJSON(pr.Labels),
	})
}

func labelsJSON(names []string) []map[string]any {
	out := []map[string]any{}
	for i, n := range names {
		out = append(out, map[string]any{"id": i + 1, "name": n})
	}
	return out
}

// PullRequestOf returns pull request number of owner/repo as the double
// holds it now (its labels after removals), and whether it exists.
func (s *Server) PullRequestOf(owner, repo string, number int) (PullRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.repo(owner, repo).pulls[number]
	pr.Labels = slices.Clone(pr.Labels)
	return pr, ok
}

// removeIssueLabel serves DELETE .../issues/{n}/labels/{name}: 200 with the
// labels left, or 404 when the pull request does not carry the label (names
// compared case-insensitively, as GitHub does).
func (s *Server) removeIssueLabel(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoFor(c)
	if r == nil {
		return
	}
	n, err := strconv.Atoi(c.r.PathValue("issue_number"))
	pr, ok := r.pulls[n]
	if err != nil || !ok {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return
	}
	name := c.r.PathValue("name")
	i := slices.IndexFunc(pr.Labels, func(l string) bool { return strings.EqualFold(l, name) })
	if i < 0 {
		writeError(c.w, http.StatusNotFound, "Label does not exist")
		return
	}
	pr.Labels = slices.Delete(slices.Clone(pr.Labels), i, i+1)
	r.pulls[n] = pr
	writeJSON(c.w, http.StatusOK, labelsJSON(pr.Labels))
}
