package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// JobTemporal is the part of the Temporal client the workflow_job router
// uses (client.Client satisfies it; tests use a fake).
type JobTemporal interface {
	ExecuteWorkflow(ctx context.Context, options client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error)
	SignalWorkflow(ctx context.Context, workflowID string, runID string, signalName string, arg any) error
}

// WorkflowJobOptions configures a WorkflowJobs router.
type WorkflowJobOptions struct {
	Temporal JobTemporal
	// Pools are the configured runner pools (RUNNER_POOLS_FILE or
	// RUNNER_POOLS), validated. Nil or empty: no job is ever taken.
	Pools *pools.Config
	// Timeout bounds each Temporal call (default 5s): GitHub gives up after 10s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// WorkflowJobs routes workflow_job events to the RunnerJob workflow of each
// GitHub Actions job (ID runnerapi.JobWorkflowID):
//
//   - queued, for a job whose labels a pool takes (pools.Config.Match),
//     of a repository the pool serves (pools.Pool.Serves; public ones only
//     with allow_public; otherwise 200, reason code pool_scope or
//     public_repository, and nothing starts), starts RunnerJob, at most once per job ever: a redelivered queued
//     reaches the running workflow (202) or, once it has finished, is
//     answered 200 "job already handled". A job no pool takes
//     (ubuntu-latest) is answered 200 and nothing starts;
//   - in_progress and completed signal the job's workflow (202). When it
//     does not exist (never seen queued, or finished), a completed job that
//     ran on one of Drydock's runners (name prefix runnerapi.RunnerPrefix)
//     releases that runner's machine to its pool directly, so the pool's
//     accounting stays right; anything else is a 200 no-op;
//   - waiting and every other action: 200 with the reason;
//   - a payload missing the job ID, labels or repository: 400;
//   - any other Temporal error: an error (503), so GitHub can redeliver.
//
// in_progress and completed of jobs that no pool takes and that ran on no
// Drydock runner (GitHub-hosted jobs, most of the traffic) are answered 200
// without asking Temporal, so they never fail while Temporal is down.
type WorkflowJobs struct {
	temporal JobTemporal
	pools    *pools.Config
	timeout  time.Duration
	log      *slog.Logger
}

// NewWorkflowJobs validates opts and returns the router.
func NewWorkflowJobs(opts WorkflowJobOptions) (*WorkflowJobs, error) {
	if opts.Temporal == nil {
		return nil, errors.New("intake: WorkflowJobOptions.Temporal is nil")
	}
	if opts.Pools == nil {
		opts.Pools = &pools.Config{}
	}
	if err := opts.Pools.Validate(); err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &WorkflowJobs{temporal: opts.Temporal, pools: opts.Pools, timeout: opts.Timeout, log: opts.Logger}, nil
}

// Route implements Router.
func (w *WorkflowJobs) Route(ctx context.Context, ev Event) (Result, error) {
	we, err := decoded[workflowJobPayload](ev)
	if err != nil {
		return Result{Status: http.StatusBadRequest, Reason: "malformed workflow_job payload: " + err.Error(), Code: "malformed_payload"}, nil
	}
	job := we.event(ev.DeliveryID)
	switch job.Action {
	case "queued", "in_progress", "completed":
	case "waiting":
		return Result{Status: http.StatusOK, Reason: "workflow_job waiting (for an environment's approval or a concurrency group): a runner is requested when it is queued", Code: "job_waiting"}, nil
	default:
		return Result{Status: http.StatusOK, Reason: fmt.Sprintf("workflow_job action %q needs no runner", job.Action), Code: "action_not_handled"}, nil
	}
	if reason := validateJob(we, job); reason != "" {
		return Result{Status: http.StatusBadRequest, Reason: reason, Code: "invalid_payload"}, nil
	}
	pool := w.pools.Match(job.Labels)
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if job.Action == "queued" {
		if pool == nil {
			return Result{Status: http.StatusOK, Reason: noPool(job.Labels), Code: "no_pool"}, nil
		}
		if res, refused := refuse(pool, we, job); refused {
			w.log.Info("workflow_job refused by the pool", "pool", pool.Name, "repository", RepoKey(job.Owner, job.Repo), "job_id", job.JobID, "code", res.Code)
			return res, nil
		}
		return w.start(ctx, pool, job)
	}
	ours := w.runnerPool(job.RunnerName)
	if pool == nil && ours == nil {
		return Result{Status: http.StatusOK, Reason: noPool(job.Labels), Code: "no_pool"}, nil
	}
	// A job the pool refuses never started a RunnerJob: nothing to tell,
	// unless it ran on one of Drydock's runners (the pool's scope changed
	// since it was queued, or GitHub gave the runner another job), whose
	// machine the pool must hear of.
	if ours == nil {
		if res, refused := refuse(pool, we, job); refused {
			return res, nil
		}
	}
	return w.signal(ctx, job)
}

// refuse returns the answer to a job the pool does not take: its
// repository is outside the pool's repositories/owners (pool_scope), or
// public while the pool does not allow_public (public_repository).
func refuse(pool *pools.Pool, we *workflowJobPayload, job runnerapi.WorkflowJobEvent) (Result, bool) {
	repo := job.Owner + "/" + job.Repo
	if !pool.Serves(job.Owner, job.Repo) {
		return Result{Status: http.StatusOK, Code: "pool_scope",
			Reason: fmt.Sprintf("runner pool %s does not serve repository %s (not in its repositories or owners): no runner", pool.Name, repo)}, true
	}
	if !pool.AllowPublic && PublicRepository(we.repo().Visibility, we.repo().Private) {
		return Result{Status: http.StatusOK, Code: "public_repository",
			Reason: fmt.Sprintf("runner pool %s does not take jobs of public repository %s (allow_public is off): no runner", pool.Name, repo)}, true
	}
	return Result{}, false
}

// PublicRepository reports whether a delivery's repository is public:
// its visibility says so or, without one, it is not marked private. A
// payload that says neither counts as public (fail closed).
func PublicRepository(visibility string, private bool) bool {
	switch visibility {
	case "public":
		return true
	case "private", "internal":
		return false
	}
	return !private
}

func noPool(labels []string) string {
	return fmt.Sprintf("no runner pool takes labels [%s]", strings.Join(labels, ", "))
}

// start starts the job's RunnerJob once per job ID, ever: a running one is
// reused (USE_EXISTING) and a finished one is not started again
// (REJECT_DUPLICATE), so a queued redelivered even after the job finished
// changes nothing.
func (w *WorkflowJobs) start(ctx context.Context, pool *pools.Pool, job runnerapi.WorkflowJobEvent) (Result, error) {
	id := runnerapi.JobWorkflowID(job.JobID)
	opts := client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                workflows.TaskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrPool.ValueSet(pool.Name),
			workflows.SearchAttrJobID.ValueSet(job.JobID),
			workflows.SearchAttrRepo.ValueSet(RepoKey(job.Owner, job.Repo)),
		),
		StaticSummary: fmt.Sprintf("job %q of %s/%s on pool %s", job.Name, job.Owner, job.Repo, pool.Name),
	}
	run, err := w.temporal.ExecuteWorkflow(ctx, opts, runnerapi.RunnerJobName, runnerapi.RunnerJobInput{Pool: pool.Name, Job: job})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &started):
		return Result{Status: http.StatusOK, Reason: "job already handled", WorkflowID: id, Code: "duplicate"}, nil
	case err != nil:
		return Result{}, fmt.Errorf("start %s (pool %s, delivery %s): %w", id, pool.Name, job.DeliveryID, err)
	}
	w.log.Debug("runner job started", "workflow_id", id, "run_id", run.GetRunID(), "pool", pool.Name, "labels", job.Labels)
	return Result{Status: http.StatusAccepted, Reason: fmt.Sprintf("runner requested from pool %s", pool.Name), WorkflowID: id, Accepted: true}, nil
}

// signal hands in_progress and completed to the job's workflow.
func (w *WorkflowJobs) signal(ctx context.Context, job runnerapi.WorkflowJobEvent) (Result, error) {
	id := runnerapi.JobWorkflowID(job.JobID)
	err := w.temporal.SignalWorkflow(ctx, id, "", runnerapi.SignalJobEvent, job)
	var nf *serviceerror.NotFound
	switch {
	case err == nil:
		return Result{Status: http.StatusAccepted, Reason: fmt.Sprintf("job %s", job.Action), WorkflowID: id, Accepted: true}, nil
	case !errors.As(err, &nf):
		return Result{}, fmt.Errorf("signal %s (%s, delivery %s): %w", id, job.Action, job.DeliveryID, err)
	}
	if job.Action != "completed" || !strings.HasPrefix(job.RunnerName, runnerapi.RunnerPrefix) {
		return Result{Status: http.StatusOK, Reason: "no-op: job not tracked", Code: "job_not_tracked"}, nil
	}
	// GitHub ran the job on one of our runners but no RunnerJob tracks it
	// (its queued was lost, or the runner took another job than the one it
	// was started for): the runner is spent, so its pool must hear of it.
	pool := w.runnerPool(job.RunnerName)
	if pool == nil {
		pool = w.pools.Match(job.Labels)
	}
	if pool == nil {
		return Result{Status: http.StatusOK, Reason: "no-op: job not tracked", Code: "job_not_tracked"}, nil
	}
	pid := runnerapi.PoolWorkflowID(pool.Name)
	err = w.temporal.SignalWorkflow(ctx, pid, "", runnerapi.SignalRelease, runnerapi.ReleaseRequest{RunnerName: job.RunnerName, JobID: job.JobID})
	switch {
	case errors.As(err, &nf):
		return Result{Status: http.StatusOK, Reason: fmt.Sprintf("no-op: job not tracked and pool %s is not running", pool.Name), Code: "job_not_tracked"}, nil
	case err != nil:
		return Result{}, fmt.Errorf("signal %s (release %s, delivery %s): %w", pid, job.RunnerName, job.DeliveryID, err)
	}
	return Result{Status: http.StatusAccepted, Reason: fmt.Sprintf("untracked job: runner %s released to pool %s", job.RunnerName, pool.Name),
		WorkflowID: pid, Accepted: true}, nil
}

// runnerPool is the pool whose runner-name prefix (runnerapi.RunnerName:
// drydock-<pool>-...) the runner carries, the longest if several do; nil
// for anyone else's runner.
func (w *WorkflowJobs) runnerPool(runner string) *pools.Pool {
	var best *pools.Pool
	for i := range w.pools.Pools {
		p := &w.pools.Pools[i]
		if strings.HasPrefix(runner, runnerapi.RunnerPrefix+p.Name+"-") && (best == nil || len(p.Name) > len(best.Name)) {
			best = p
		}
	}
	return best
}

// validateJob returns why a delivery cannot be acted on, or "".
func validateJob(we *workflowJobPayload, job runnerapi.WorkflowJobEvent) string {
	var ps problems
	if we.WorkflowJob == nil {
		ps.missing = append(ps.missing, "workflow_job")
	} else {
		if job.JobID <= 0 {
			ps.missing = append(ps.missing, "workflow_job.id")
		}
		if len(job.Labels) == 0 {
			ps.missing = append(ps.missing, "workflow_job.labels")
		}
	}
	ps.githubName("repository.owner.login", job.Owner)
	ps.githubName("repository.name", job.Repo)
	return ps.reason("workflow_job")
}
