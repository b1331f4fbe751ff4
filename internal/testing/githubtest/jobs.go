package githubtest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The double is also the GitHub Actions service that hands jobs to runners.
// Tests queue jobs with AddJob; a stand-in runner program, started by
// Drydock with an encoded JIT config, connects with ControlClaimRunner and
// reports the end of its job with ControlCompleteJob. These control routes
// are not GitHub's API: they model the runner protocol (which GitHub does
// not document) by its effects, and live under /_test/ so nobody mistakes
// them for REST endpoints.
const (
	// ControlClaimRunner: body {"jit_config": "<encoded>"}. The runner of that
	// config goes online and is handed the oldest queued job of its scope
	// whose labels are all among its own (case-insensitively): 200
	// {"job": <GitHub's job object>, "duration_ms": n, "conclusion": "..."}
	// (what the runner should take and report, from AddJob), the job
	// in_progress and the runner busy. 204 when no job matches: the runner
	// stays online and claims again later. A config that was already handed
	// a job answers 409 (JIT runners are single-use); one whose runner was
	// removed, 404 (the runner should exit); an unreadable one, 400.
	ControlClaimRunner = "POST /_test/runners/claim"
	// ControlCompleteJob: body {"conclusion": "success"} (default: the
	// conclusion given to AddJob, else success). The in-progress job
	// completes; its JIT runner goes offline and is deregistered. 404 for an
	// unknown job, 409 for one that is not in progress.
	ControlCompleteJob = "POST /_test/jobs/{job_id}/complete"
	// ControlRegisterRunner: body {"token": "<registration token>", "name":
	// "...", "labels": [...]}, what actions/runner's config.sh sends. It
	// registers a persistent runner in the token's scope (replacing an idle
	// runner of that name, as --replace does) and answers 201 {"runner":
	// {...}, "runner_config": "<encoded>"}: the runner claims job after job
	// with that config through ControlClaimRunner. 401 for a token the
	// double did not issue; 409 when a runner of that name is busy.
	ControlRegisterRunner = "POST /_test/runners/register"
)

// Job statuses as GitHub reports them.
const (
	JobQueued     = "queued"
	JobInProgress = "in_progress"
	JobCompleted  = "completed"
)

// Job is a GitHub Actions workflow job of the double.
type Job struct {
	ID    int64 // AddJob: 0 picks one
	RunID int64 // AddJob: 0 picks one
	Name  string
	// Labels are the job's runs-on labels.
	Labels []string
	// Duration is how long the stand-in runner should take (told on claim).
	Duration time.Duration
	// Conclusion: given to AddJob, what the stand-in runner should report
	// (default success); as read back, the job's actual conclusion, "" until
	// it completes.
	Conclusion string
	// Held jobs are queued but no runner is handed them (GitHub waiting on
	// something else, e.g. a busy concurrency group): a test's way to keep
	// a job waiting for pickup. See SetHeld.
	Held bool

	// Set by the double.
	Owner, Repo  string
	Status       string // JobQueued, JobInProgress, JobCompleted
	RunnerID     int64
	RunnerName   string
	HeadBranch   string
	HeadSHA      string
	WorkflowName string
	CreatedAt    time.Time
	StartedAt    time.Time
	CompletedAt  time.Time
}

type jobState struct {
	Job
	planned string // the conclusion the runner should report
	groupID int64
}

func (j *jobState) itemID() int64 { return j.ID }

func (j *jobState) snapshot() Job {
	out := j.Job
	out.Labels = slices.Clone(j.Labels)
	return out
}

// jobJSON is GitHub's workflow job object.
type jobJSON struct {
	ID              int64      `json:"id"`
	RunID           int64      `json:"run_id"`
	RunURL          string     `json:"run_url"`
	NodeID          string     `json:"node_id"`
	HeadBranch      string     `json:"head_branch"`
	HeadSHA         string     `json:"head_sha"`
	URL             string     `json:"url"`
	HTMLURL         string     `json:"html_url"`
	Status          string     `json:"status"`
	Conclusion      *string    `json:"conclusion"`
	CreatedAt       time.Time  `json:"created_at"`
	StartedAt       time.Time  `json:"started_at"`
	CompletedAt     *time.Time `json:"completed_at"`
	Name            string     `json:"name"`
	Steps           []any      `json:"steps"`
	CheckRunURL     string     `json:"check_run_url"`
	Labels          []string   `json:"labels"`
	RunnerID        *int64     `json:"runner_id"`
	RunnerName      *string    `json:"runner_name"`
	RunnerGroupID   *int64     `json:"runner_group_id"`
	RunnerGroupName *string    `json:"runner_group_name"`
	RunAttempt      int        `json:"run_attempt"`
	WorkflowName    string     `json:"workflow_name"`
}

func (j *jobState) json(c *call) jobJSON {
	repoAPI := c.apiBase + "/repos/" + j.Owner + "/" + j.Repo
	out := jobJSON{
		ID: j.ID, RunID: j.RunID, RunURL: repoAPI + "/actions/runs/" + strconv.FormatInt(j.RunID, 10),
		NodeID: fmt.Sprintf("CR_%d", j.ID), HeadBranch: j.HeadBranch, HeadSHA: j.HeadSHA,
		URL:     repoAPI + "/actions/jobs/" + strconv.FormatInt(j.ID, 10),
		HTMLURL: fmt.Sprintf("%s/%s/%s/actions/runs/%d/job/%d", c.origin, j.Owner, j.Repo, j.RunID, j.ID),
		Status:  j.Status, CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, Name: j.Name, Steps: []any{},
		CheckRunURL: repoAPI + "/check-runs/" + strconv.FormatInt(j.ID, 10), Labels: slices.Clone(j.Labels),
		RunAttempt: 1, WorkflowName: j.WorkflowName,
	}
	if out.Labels == nil {
		out.Labels = []string{}
	}
	if j.Status == JobCompleted {
		concl, done := j.Conclusion, j.CompletedAt
		out.Conclusion, out.CompletedAt = &concl, &done
	}
	if j.RunnerName != "" {
		id, name, gid, group := j.RunnerID, j.RunnerName, j.groupID, "Default"
		out.RunnerID, out.RunnerName, out.RunnerGroupID, out.RunnerGroupName = &id, &name, &gid, &group
	}
	return out
}

// AddJob queues a workflow job in owner/repo (created if needed) and
// returns it with the fields the double fills in. Jobs are handed to
// runners oldest first.
func (s *Server) AddJob(owner, repo string, job Job) Job {
	var out Job
	func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		r := s.repo(owner, repo)
		a := s.actions()
		if job.ID == 0 {
			job.ID = s.id()
		}
		if job.RunID == 0 {
			job.RunID = s.id()
		}
		if a.job(job.ID) != nil {
			panic(fmt.Sprintf("githubtest: AddJob: job %d exists", job.ID))
		}
		if job.Name == "" {
			job.Name = "build"
		}
		if job.WorkflowName == "" {
			job.WorkflowName = "CI"
		}
		if job.HeadBranch == "" {
			job.HeadBranch = r.defaultBranch
		}
		if job.HeadSHA == "" {
			job.HeadSHA = r.branches[r.defaultBranch]
		}
		planned := job.Conclusion
		if planned == "" {
			planned = "success"
		}
		t := now()
		job.Owner, job.Repo, job.Labels = r.owner, r.name, slices.Clone(job.Labels)
		job.Status, job.Conclusion, job.RunnerID, job.RunnerName = JobQueued, "", 0, ""
		job.CreatedAt, job.StartedAt, job.CompletedAt = t, t, time.Time{} // GitHub sets started_at on queued jobs too
		js := &jobState{Job: job, planned: planned}
		a.jobs = append(a.jobs, js)
		out = js.snapshot()
	}()
	s.fireJob("queued", out)
	return out
}

// job finds a job by ID. Callers hold s.mu.
func (a *actionsState) job(id int64) *jobState { return byID(a.jobs, id) }

// Jobs returns every job, oldest first.
func (s *Server) Jobs() []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return snapshots[Job](s.actions().jobs)
}

// Job returns job id; ok is false when there is none.
func (s *Server) Job(id int64) (job Job, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.actions().job(id); j != nil {
		return j.snapshot(), true
	}
	return Job{}, false
}

// CancelJob cancels job id, as a user cancelling the workflow run would: a
// queued or in-progress job completes with conclusion cancelled, and the
// JIT runner that had it goes away. A completed job is left alone; an
// unknown one panics.
func (s *Server) CancelJob(id int64) {
	var out Job
	changed := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		a := s.actions()
		j := a.job(id)
		if j == nil {
			panic(fmt.Sprintf("githubtest: CancelJob: no job %d", id))
		}
		if j.Status == JobCompleted {
			return false
		}
		s.finishJob(j, "cancelled")
		out = j.snapshot()
		return true
	}()
	if changed {
		s.fireJob("completed", out)
	}
}

// SetHeld holds a queued job back from runners (held) or lets them have it
// again. An unknown job panics.
func (s *Server) SetHeld(id int64, held bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.actions().job(id)
	if j == nil {
		panic(fmt.Sprintf("githubtest: SetHeld: no job %d", id))
	}
	j.Held = held
}

// finishJob completes j and retires its runner: a JIT runner is
// deregistered, a persistent one is idle again. Callers hold s.mu.
func (s *Server) finishJob(j *jobState, conclusion string) {
	a := s.actions()
	j.Status, j.Conclusion, j.CompletedAt = JobCompleted, conclusion, now()
	if r := a.runnerByID(j.RunnerID); r != nil && j.RunnerID != 0 && r.JobID == j.ID {
		r.Busy = false
		if r.Ephemeral {
			r.Status = "offline"
			a.deleteRunner(r) // single-use: GitHub deregisters it after its job
		} else {
			r.JobID = 0 // persistent: idle, ready for the next job
		}
	}
}

// OnJobEvent calls fn after every change of a job's status, with the
// workflow_job action GitHub would deliver ("queued", "in_progress",
// "completed") and the job as it is then: end-to-end tests forward these as
// signed webhooks. fn runs on the goroutine that made the change, without
// the double's lock held.
func (s *Server) OnJobEvent(fn func(action string, job Job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions()
	a.onJob = append(a.onJob, fn)
}

func (s *Server) fireJob(action string, job Job) {
	s.mu.Lock()
	fns := slices.Clone(s.actions().onJob)
	s.mu.Unlock()
	for _, fn := range fns {
		fn(action, job)
	}
}

// matches reports whether runner r may take job j: the job's repository is
// in the runner's scope and every job label is one of the runner's.
func (a *actionsState) matches(r *runnerState, j *jobState) bool {
	switch r.Scope.Kind {
	case "org":
		if !strings.EqualFold(j.Owner, r.Scope.Org) {
			return false
		}
		if repos, ok := a.groupRepos[fmt.Sprintf("%s#%d", strings.ToLower(r.Scope.Org), r.GroupID)]; ok &&
			!slices.Contains(repos, strings.ToLower(j.Owner+"/"+j.Repo)) {
			return false
		}
	default:
		if !strings.EqualFold(j.Owner+"/"+j.Repo, r.Scope.Repo) {
			return false
		}
	}
	if len(j.Labels) == 0 {
		return false
	}
	for _, l := range j.Labels {
		if !slices.ContainsFunc(r.Labels, func(rl string) bool { return strings.EqualFold(rl, l) }) {
			return false
		}
	}
	return true
}

func (s *Server) claimRunner(c *call) {
	var body struct {
		JITConfig string `json:"jit_config"`
		MachineID string `json:"machine_id"`
	}
	if !decodeBody(c, &body) {
		return
	}
	cfg, err := DecodeJITConfig(body.JITConfig)
	if err != nil {
		writeError(c.w, http.StatusBadRequest, err.Error())
		return
	}
	if out, claimed := s.claimJob(c, cfg.RunnerID, body.JITConfig, body.MachineID); claimed {
		s.fireJob("in_progress", out)
	}
}

// claimJob brings the runner of config online (on machineID, if given)
// and hands it the oldest queued job it may take, answering the claim; it
// returns the job when there was one. It takes s.mu.
func (s *Server) claimJob(c *call, runnerID int64, config, machineID string) (Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions()
	r := a.runnerByID(runnerID)
	if !claimable(c, r, config) {
		return Job{}, false
	}
	r.Status, r.OS = "online", "Linux"
	if machineID != "" {
		r.MachineID = machineID
	}
	j := a.nextJobFor(r)
	if j == nil {
		c.w.WriteHeader(http.StatusNoContent)
		return Job{}, false
	}
	r.Busy, r.used, r.JobID = true, r.Ephemeral, j.ID
	j.Status, j.StartedAt = JobInProgress, now()
	j.RunnerID, j.RunnerName, j.groupID = r.ID, r.Name, r.GroupID
	writeJSON(c.w, http.StatusOK, map[string]any{
		"job": j.json(c), "duration_ms": j.Duration.Milliseconds(), "conclusion": j.planned,
	})
	return j.snapshot(), true
}

// claimable reports whether runner r (nil: none) may claim with config:
// it is registered with that config, its config was not used up, and it
// is idle. Otherwise it answers 404 or 409.
func claimable(c *call, r *runnerState, config string) bool {
	switch {
	case r == nil || r.config != config:
		writeError(c.w, http.StatusNotFound, "runner not found: it was removed")
	case r.used:
		writeError(c.w, http.StatusConflict, "JIT config already used: a just-in-time runner takes one job")
	case r.Busy:
		writeError(c.w, http.StatusConflict, "runner is running a job")
	default:
		return true
	}
	return false
}

// nextJobFor is the oldest queued, unheld job runner r may take, or nil.
// Callers hold s.mu.
func (a *actionsState) nextJobFor(r *runnerState) *jobState {
	for _, j := range a.jobs { // oldest first
		if j.Status == JobQueued && !j.Held && a.matches(r, j) {
			return j
		}
	}
	return nil
}

func (s *Server) completeJob(c *call) {
	var body struct {
		Conclusion string `json:"conclusion"`
	}
	if c.r.ContentLength != 0 && !decodeBody(c, &body) {
		return
	}
	id, err := strconv.ParseInt(c.r.PathValue("job_id"), 10, 64)
	var out Job
	done := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		j := s.actions().job(id)
		if err != nil || j == nil {
			writeError(c.w, http.StatusNotFound, "Not Found")
			return false
		}
		if j.Status != JobInProgress {
			writeError(c.w, http.StatusConflict, fmt.Sprintf("job %d is %s, not in_progress", id, j.Status))
			return false
		}
		concl := body.Conclusion
		if concl == "" {
			concl = j.planned
		}
		s.finishJob(j, concl)
		writeJSON(c.w, http.StatusOK, map[string]any{"job": j.json(c)})
		out = j.snapshot()
		return true
	}()
	if done {
		s.fireJob("completed", out)
	}
}

func (s *Server) getWorkflowJob(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoFor(c)
	if r == nil {
		return
	}
	id, err := strconv.ParseInt(c.r.PathValue("job_id"), 10, 64)
	j := s.actions().job(id)
	if err != nil || j == nil || !strings.EqualFold(j.Owner+"/"+j.Repo, r.owner+"/"+r.name) {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(c.w, http.StatusOK, j.json(c))
}
