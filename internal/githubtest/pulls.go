package githubtest

import (
	"fmt"
	"net/http"
	"strconv"
)

// PullRequest is the state of a pull request the double knows. Its JSON is
// the part of GitHub's pull request object Drydock reads.
type PullRequest struct {
	Number  int
	State   string // "open" or "closed"
	Merged  bool
	HeadSHA string
	HeadRef string
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
	})
}
