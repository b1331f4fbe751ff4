package githubtest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Comment is an issue (or pull request) comment as the API shows it, plus
// how many times it was edited through the API.
type Comment struct {
	ID                    int64     `json:"id"`
	NodeID                string    `json:"node_id"`
	URL                   string    `json:"url"`
	HTMLURL               string    `json:"html_url"`
	Body                  string    `json:"body"`
	User                  User      `json:"user"`
	CreatedAt             time.Time `json:"created_at"`
	UpdatedAt             time.Time `json:"updated_at"`
	IssueURL              string    `json:"issue_url"`
	AuthorAssociation     string    `json:"author_association"`
	PerformedViaGitHubApp *App      `json:"performed_via_github_app"`

	Number int `json:"-"` // the issue or pull request
	Edits  int `json:"-"` // successful PATCHes
}

// Comments returns the current comments of issue or pull request number,
// oldest first.
func (s *Server) Comments(owner, repo string, number int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[repoKey(owner, repo)]
	if r == nil {
		return nil
	}
	var out []Comment
	for _, c := range r.comments {
		if c.Number == number {
			out = append(out, *c)
		}
	}
	return out
}

// AddComment seeds a comment by login (someone other than the code under
// test) on issue or pull request number, creating the repository if
// needed. It returns the comment's ID.
func (s *Server) AddComment(owner, repo string, number int, login, body string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repo(owner, repo)
	return s.newComment(r, s.srv.URL, s.srv.URL, number, s.userNamed(login), nil, body).ID
}

// newComment appends a comment to r. Callers hold s.mu.
func (s *Server) newComment(r *repoState, apiBase, origin string, number int, user User, via *App, body string) *Comment {
	id := s.id()
	t := now()
	repoAPI := apiBase + "/repos/" + r.owner + "/" + r.name
	c := &Comment{
		ID: id, NodeID: fmt.Sprintf("IC_%d", id), Body: body, User: user, CreatedAt: t, UpdatedAt: t,
		URL:      repoAPI + "/issues/comments/" + strconv.FormatInt(id, 10),
		HTMLURL:  fmt.Sprintf("%s/%s/%s/pull/%d#issuecomment-%d", origin, r.owner, r.name, number, id),
		IssueURL: fmt.Sprintf("%s/issues/%d", repoAPI, number), AuthorAssociation: "NONE",
		PerformedViaGitHubApp: via, Number: number,
	}
	r.comments = append(r.comments, c)
	return c
}

func (s *Server) listIssueComments(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, n := s.issueFor(c)
	if r == nil {
		return
	}
	var out []Comment
	for _, cm := range r.comments { // oldest first
		if cm.Number == n {
			out = append(out, *cm)
		}
	}
	writeJSON(c.w, http.StatusOK, paginate(c, out))
}

// issueFor finds the request's repository and issue number, or answers
// 404. Callers hold s.mu.
func (s *Server) issueFor(c *call) (*repoState, int) {
	r := s.repoFor(c)
	if r == nil {
		return nil, 0
	}
	n, err := strconv.Atoi(c.r.PathValue("issue_number"))
	if err != nil || n <= 0 {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return nil, 0
	}
	return r, n
}

// validBody applies GitHub's checks on a comment body.
func validBody(c *call, body *string) bool {
	switch {
	case body == nil || *body == "":
		writeValidation(c.w, "Validation Failed", "IssueComment", "body", "missing_field")
		return false
	case utf8.RuneCountInString(*body) > 65536:
		writeValidation(c.w, "Validation Failed", "IssueComment", "body", "too_long")
		return false
	}
	return true
}

// commentBody decodes a comment's create or update request, {"body": ...}.
func commentBody(c *call) (*string, bool) {
	var req struct {
		Body *string `json:"body"`
	}
	if !decodeBody(c, &req) {
		return nil, false
	}
	return req.Body, true
}

func (s *Server) createIssueComment(c *call) {
	body, ok := commentBody(c)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, n := s.issueFor(c)
	if r == nil || !validBody(c, body) {
		return
	}
	cm := s.newComment(r, c.apiBase, c.origin, n, c.who.user, c.performedVia(), *body)
	writeJSON(c.w, http.StatusCreated, cm)
}

// commentFor finds the request's comment in its repository or answers 404.
// Callers hold s.mu.
func (s *Server) commentFor(c *call) (*repoState, int) {
	r := s.repoFor(c)
	if r == nil {
		return nil, -1
	}
	id, err := strconv.ParseInt(c.r.PathValue("comment_id"), 10, 64)
	if err == nil {
		if i := slices.IndexFunc(r.comments, func(cm *Comment) bool { return cm.ID == id }); i >= 0 {
			return r, i
		}
	}
	writeError(c.w, http.StatusNotFound, "Not Found")
	return nil, -1
}

func (s *Server) updateIssueComment(c *call) {
	body, ok := commentBody(c)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, i := s.commentFor(c)
	if r == nil || !validBody(c, body) {
		return
	}
	cm := r.comments[i]
	cm.Body = *body
	cm.UpdatedAt = now()
	cm.Edits++
	writeJSON(c.w, http.StatusOK, cm)
}

func (s *Server) deleteIssueComment(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, i := s.commentFor(c)
	if r == nil {
		return
	}
	r.comments = slices.Delete(r.comments, i, i+1)
	c.w.WriteHeader(http.StatusNoContent)
}
