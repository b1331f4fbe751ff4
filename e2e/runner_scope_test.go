package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// A job with the pool's labels from a repository of the pool's own
// organization that the pool does not list is acknowledged and leases
// nothing: no RunnerJob, no machine, and it stays queued on GitHub, while
// a listed repository's job runs. The pool's runner group is restricted to
// the listed repository on GitHub's side (as docs/runners.md asks), so the
// in-scope job's runner is not handed the other one either.
func TestRunnerPoolRefusesRepositoriesOutsideItsScope(t *testing.T) {
	s := newStackWith(t, func(s *stack) string { return poolJSON(t, s, "scoped", 2, "", "") })
	s.gh.RestrictRunnerGroup(jobOwner, 2, jobOwner+"/"+jobRepo)
	const otherRepo = "secret-sauce"
	s.gh.AddRepo(jobOwner, otherRepo)
	ids := nextJobIDs(2)
	outside, inside := ids[0], ids[1]

	s.gh.AddJob(jobOwner, otherRepo, githubtest.Job{ID: outside, Labels: jobLabels, Duration: 200 * time.Millisecond})
	body, err := ghfixture.WorkflowJob("queued", ghfixture.Job{ID: outside, RunID: outside * 10, Name: "build", Owner: jobOwner, Repo: otherRepo, Org: jobOwner, Labels: jobLabels})
	require.NoError(t, err)
	code, out := s.post("workflow_job", "scope-outside", body, intake.SignatureHeader([]byte(secret), body))
	require.Equal(t, http.StatusOK, code, out)
	assert.Equal(t, "runner pool scoped does not serve repository octo-org/secret-sauce (not in its repositories or owners): no runner", out["reason"])

	s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: inside, Labels: jobLabels, Duration: 200 * time.Millisecond})
	require.Equal(t, http.StatusAccepted, s.queueJob(t, inside, "scope-inside"))
	s.waitJobs(t, []int64{inside})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = s.tc.DescribeWorkflowExecution(ctx, runnerapi.JobWorkflowID(outside), "")
	var nf *serviceerror.NotFound
	assert.True(t, errors.As(err, &nf), "no RunnerJob for the refused job: %v", err)
	job, ok := s.gh.Job(outside)
	require.True(t, ok)
	assert.Equal(t, githubtest.JobQueued, job.Status, "the refused job is still queued on GitHub")
	assert.EqualValues(t, 1, s.emu.Stats().Creates, "one machine, for the listed repository's job")
	inv := s.inventory(t, "scoped")
	total := 0
	for _, m := range inv.Machines {
		total += m.Jobs
	}
	assert.Equal(t, 1, total, "one lease: the refused job leased nothing")
	assert.Empty(t, inv.Queue)
}
