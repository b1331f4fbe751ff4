package githubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Deployment is a deployment as the API shows it, plus what the double
// recorded about its creation (the json:"-" fields).
type Deployment struct {
	URL                   string          `json:"url"`
	ID                    int64           `json:"id"`
	NodeID                string          `json:"node_id"`
	SHA                   string          `json:"sha"`
	Ref                   string          `json:"ref"`
	Task                  string          `json:"task"`
	Payload               json.RawMessage `json:"payload"`
	OriginalEnvironment   string          `json:"original_environment"`
	Environment           string          `json:"environment"`
	Description           *string         `json:"description"`
	Creator               User            `json:"creator"`
	CreatedAt             time.Time       `json:"created_at"`
	UpdatedAt             time.Time       `json:"updated_at"`
	StatusesURL           string          `json:"statuses_url"`
	RepositoryURL         string          `json:"repository_url"`
	TransientEnvironment  bool            `json:"transient_environment"`
	ProductionEnvironment bool            `json:"production_environment"`
	PerformedViaGitHubApp *App            `json:"performed_via_github_app"`

	// AutoMerge is the request's auto_merge (GitHub's default: true).
	AutoMerge bool `json:"-"`
	// RequiredContexts is the request's required_contexts; nil when the
	// request omitted it (GitHub then requires every status check to pass).
	RequiredContexts []string `json:"-"`
	// Statuses are the deployment's statuses in creation order.
	Statuses []DeploymentStatus `json:"-"`
}

// DeploymentStatus is a deployment status as the API shows it, plus the
// request's auto_inactive.
type DeploymentStatus struct {
	URL                   string    `json:"url"`
	ID                    int64     `json:"id"`
	NodeID                string    `json:"node_id"`
	State                 string    `json:"state"`
	Creator               User      `json:"creator"`
	Description           string    `json:"description"`
	Environment           string    `json:"environment"`
	TargetURL             string    `json:"target_url"`
	LogURL                string    `json:"log_url"`
	EnvironmentURL        string    `json:"environment_url"`
	CreatedAt             time.Time `json:"created_at"`
	UpdatedAt             time.Time `json:"updated_at"`
	DeploymentURL         string    `json:"deployment_url"`
	RepositoryURL         string    `json:"repository_url"`
	PerformedViaGitHubApp *App      `json:"performed_via_github_app"`

	// AutoInactive is the request's auto_inactive (GitHub's default: true).
	AutoInactive bool `json:"-"`
}

// Deployments returns owner/repo's deployments in creation order, each
// with its statuses in creation order.
func (s *Server) Deployments(owner, repo string) []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[repoKey(owner, repo)]
	if r == nil {
		return nil
	}
	out := make([]Deployment, 0, len(r.deployments))
	for _, d := range r.deployments {
		cp := *d
		cp.Statuses = slices.Clone(d.Statuses)
		cp.RequiredContexts = slices.Clone(d.RequiredContexts)
		out = append(out, cp)
	}
	return out
}

var deploymentStates = map[string]bool{
	"error": true, "failure": true, "inactive": true, "in_progress": true, "queued": true, "pending": true, "success": true,
}

// deploymentRequest is the body of a create-deployment request.
type deploymentRequest struct {
	Ref                   *string          `json:"ref"`
	Task                  *string          `json:"task"`
	AutoMerge             *bool            `json:"auto_merge"`
	RequiredContexts      *json.RawMessage `json:"required_contexts"`
	Payload               json.RawMessage  `json:"payload"`
	Environment           *string          `json:"environment"`
	Description           *string          `json:"description"`
	TransientEnvironment  *bool            `json:"transient_environment"`
	ProductionEnvironment *bool            `json:"production_environment"`
}

func (s *Server) createDeployment(c *call) {
	var req deploymentRequest
	if !decodeBody(c, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoFor(c)
	if r == nil {
		return
	}
	if req.Ref == nil || *req.Ref == "" {
		writeValidation(c.w, "Invalid request.\n\n\"ref\" wasn't supplied.", "Deployment", "ref", "missing_field")
		return
	}
	sha, ok := r.resolve(*req.Ref)
	if !ok {
		writeJSON(c.w, http.StatusUnprocessableEntity, map[string]any{"message": "No ref found for: " + *req.Ref, "documentation_url": docsURL, "status": "422"})
		return
	}
	d := &Deployment{
		SHA: sha, Ref: *req.Ref, Task: "deploy", Payload: json.RawMessage(`{}`), Environment: "production",
		Description: req.Description, Creator: c.who.user, AutoMerge: true, PerformedViaGitHubApp: c.performedVia(),
	}
	req.applyEnvironment(d)
	if req.RequiredContexts != nil && string(*req.RequiredContexts) != "null" {
		d.RequiredContexts = []string{}
		if err := json.Unmarshal(*req.RequiredContexts, &d.RequiredContexts); err != nil {
			writeValidation(c.w, "Invalid request.\n\nFor 'properties/required_contexts', is not an array.", "Deployment", "required_contexts", "invalid")
			return
		}
	}
	// GitHub merges the default branch into ref first when auto_merge is
	// true and ref is behind it, and checks every commit status context
	// when required_contexts is omitted. The double records both fields
	// (for assertions) and models neither: it has no merges or statuses.
	s.addDeployment(c, r, d)
	writeJSON(c.w, http.StatusCreated, d)
}

// applyEnvironment sets the deployment's task, environment, auto_merge,
// payload and environment flags from the request, over GitHub's defaults
// (production_environment: whether the environment is "production").
func (req *deploymentRequest) applyEnvironment(d *Deployment) {
	if req.Task != nil {
		d.Task = *req.Task
	}
	if req.Environment != nil && *req.Environment != "" {
		d.Environment = *req.Environment
	}
	d.OriginalEnvironment = d.Environment
	if req.AutoMerge != nil {
		d.AutoMerge = *req.AutoMerge
	}
	if len(req.Payload) > 0 && string(req.Payload) != "null" {
		d.Payload = req.Payload
	}
	d.ProductionEnvironment = d.Environment == "production"
	if req.ProductionEnvironment != nil {
		d.ProductionEnvironment = *req.ProductionEnvironment
	}
	if req.TransientEnvironment != nil {
		d.TransientEnvironment = *req.TransientEnvironment
	}
}

// addDeployment gives d its ID, node ID, times and URLs and appends it to
// r. Callers hold s.mu.
func (s *Server) addDeployment(c *call, r *repoState, d *Deployment) {
	d.ID = s.id()
	d.NodeID = fmt.Sprintf("DE_%d", d.ID)
	d.CreatedAt = now()
	d.UpdatedAt = d.CreatedAt
	d.URL = r.apiURL(c) + "/deployments/" + strconv.FormatInt(d.ID, 10)
	d.StatusesURL = d.URL + "/statuses"
	d.RepositoryURL = r.apiURL(c)
	r.deployments = append(r.deployments, d)
}

// deploymentFor finds the request's deployment or answers 404. Callers hold s.mu.
func (s *Server) deploymentFor(c *call) (*repoState, *Deployment) {
	r := s.repoFor(c)
	if r == nil {
		return nil, nil
	}
	id, err := strconv.ParseInt(c.r.PathValue("deployment_id"), 10, 64)
	if err == nil {
		for _, d := range r.deployments {
			if d.ID == id {
				return r, d
			}
		}
	}
	writeError(c.w, http.StatusNotFound, "Not Found")
	return nil, nil
}

func (s *Server) listDeployments(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoFor(c)
	if r == nil {
		return
	}
	q := c.r.URL.Query()
	var out []Deployment
	for _, d := range slices.Backward(r.deployments) { // newest first
		if (q.Has("sha") && q.Get("sha") != d.SHA) || (q.Has("ref") && q.Get("ref") != d.Ref) ||
			(q.Has("task") && q.Get("task") != d.Task) || (q.Has("environment") && q.Get("environment") != d.Environment) {
			continue
		}
		out = append(out, *d)
	}
	writeJSON(c.w, http.StatusOK, paginate(c, out))
}

func (s *Server) getDeployment(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, d := s.deploymentFor(c); d != nil {
		writeJSON(c.w, http.StatusOK, d)
	}
}

func (s *Server) createDeploymentStatus(c *call) {
	var req struct {
		State          string  `json:"state"`
		TargetURL      string  `json:"target_url"`
		LogURL         string  `json:"log_url"`
		Description    string  `json:"description"`
		Environment    *string `json:"environment"`
		EnvironmentURL string  `json:"environment_url"`
		AutoInactive   *bool   `json:"auto_inactive"`
	}
	if !decodeBody(c, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, d := s.deploymentFor(c)
	if d == nil || !validDeploymentStatus(c, req.State, req.Description) {
		return
	}
	st := DeploymentStatus{
		State: req.State, Creator: c.who.user, Description: req.Description, Environment: d.Environment,
		TargetURL: req.TargetURL, LogURL: req.LogURL, EnvironmentURL: req.EnvironmentURL,
		DeploymentURL: d.URL, RepositoryURL: r.apiURL(c), AutoInactive: true, PerformedViaGitHubApp: c.performedVia(),
	}
	if st.LogURL != "" && st.TargetURL == "" {
		st.TargetURL = st.LogURL // "Setting log_url will automatically set target_url to the same value."
	}
	if req.Environment != nil && *req.Environment != "" {
		d.Environment = *req.Environment
		st.Environment = d.Environment
	}
	if req.AutoInactive != nil {
		st.AutoInactive = *req.AutoInactive
	}
	s.addStatus(d, st)
	if st.State == "success" && st.AutoInactive {
		s.inactivatePrior(c, r, d)
	}
	writeJSON(c.w, http.StatusCreated, d.Statuses[len(d.Statuses)-1])
}

// validDeploymentStatus applies GitHub's checks on a new status's state
// and description, answering 422 when one fails.
func validDeploymentStatus(c *call, state, description string) bool {
	if !deploymentStates[state] {
		writeValidation(c.w, "Validation Failed", "DeploymentStatus", "state", "invalid")
		return false
	}
	if utf8.RuneCountInString(description) > 140 {
		writeValidation(c.w, "Validation Failed", "DeploymentStatus", "description", "too_long")
		return false
	}
	return true
}

// inactivatePrior is auto_inactive, after a success status on d: "Adds a
// new inactive status to all prior non-transient, non-production
// environment deployments with the same repository and environment name
// as the created status's deployment. An inactive status is only added to
// deployments that had a success state." Callers hold s.mu.
func (s *Server) inactivatePrior(c *call, r *repoState, d *Deployment) {
	for _, old := range r.deployments {
		if old.ID >= d.ID || old.Environment != d.Environment || old.TransientEnvironment || old.ProductionEnvironment ||
			len(old.Statuses) == 0 || old.Statuses[len(old.Statuses)-1].State != "success" {
			continue
		}
		s.addStatus(old, DeploymentStatus{
			State: "inactive", Creator: c.who.user, Environment: old.Environment,
			DeploymentURL: old.URL, RepositoryURL: r.apiURL(c), PerformedViaGitHubApp: c.performedVia(),
		})
	}
}

// addStatus appends st to d. Callers hold s.mu.
func (s *Server) addStatus(d *Deployment, st DeploymentStatus) {
	st.ID = s.id()
	st.NodeID = fmt.Sprintf("DES_%d", st.ID)
	st.URL = d.URL + "/statuses/" + strconv.FormatInt(st.ID, 10)
	st.CreatedAt = now()
	st.UpdatedAt = st.CreatedAt
	d.Statuses = append(d.Statuses, st)
	d.UpdatedAt = st.CreatedAt
}

func (s *Server) listDeploymentStatuses(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, d := s.deploymentFor(c)
	if d == nil {
		return
	}
	out := slices.Clone(d.Statuses)
	slices.Reverse(out) // newest first
	writeJSON(c.w, http.StatusOK, paginate(c, out))
}
