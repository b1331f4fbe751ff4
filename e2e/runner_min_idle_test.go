package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// withMinIdle is RUNNER_POOLS (poolJSON's) with min_idle set on its pools.
func withMinIdle(t *testing.T, poolsJSON string, minIdle int) string {
	t.Helper()
	var cfg struct {
		Pools []map[string]any `json:"pools"`
	}
	require.NoError(t, json.Unmarshal([]byte(poolsJSON), &cfg))
	for _, p := range cfg.Pools {
		p["min_idle"] = minIdle
	}
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	return string(b)
}

// A job that queues while a machine is being set up for min_idle gets that
// machine still running from its setup: no machine is put to sleep and
// woken again for a job.
func TestRunnerMinIdleMachineSetUpMeanwhileGoesToAWaitingJobRunning(t *testing.T) {
	s := newStackWith(t, func(s *stack) string { return withMinIdle(t, poolJSON(t, s, "idle", 3, "sleep 2", ""), 1) })
	ids := nextJobIDs(2)
	s.keepHistories(map[string]runMatcher{
		"runner-pool-min-idle": withID(runnerapi.PoolWorkflowID("idle")),
		// The pool's second machine, provisioned for min_idle when the
		// first job started it.
		"runner-provision-min-idle": withID(runnerapi.ProvisionWorkflowID("idle", 2)),
	})
	for _, id := range ids {
		s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: id, Labels: jobLabels, Duration: 200 * time.Millisecond})
	}
	// The first job starts the pool: one machine for it, one for min_idle.
	s.queueJobs(t, ids[:1])
	require.Eventually(t, func() bool { return s.emu.Stats().Creates >= 2 }, 30*time.Second, 20*time.Millisecond,
		"the pool provisions a machine for the job and one for min_idle")
	// The second job queues while both are being set up (2 s of setup):
	// it takes whichever of them the first job does not.
	s.queueJobs(t, ids[1:])
	s.waitJobs(t, ids)
	st := s.emu.Stats()
	assert.Zero(t, st.Wakes, "each job got a machine running from its setup: none was put to sleep and woken for a job")
	t.Logf("machines created %d, sleeps %d, wakes %d", st.Creates, st.Sleeps, st.Wakes)
}
