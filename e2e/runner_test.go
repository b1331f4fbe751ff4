package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

const (
	jobOwner = "octo-org"
	jobRepo  = "builds"
)

var jobLabels = []string{"self-hosted", "linux"}

// jobIDs are unique per run, so the tests repeat against one dev server
// (a job ID is handled once ever, as on GitHub).
var jobIDs = time.Now().UnixNano() / 1000 % 1_000_000_000 * 100

func nextJobIDs(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		jobIDs++
		out[i] = jobIDs
	}
	return out
}

// poolJSON is a runner pool whose runners are the stand-in runner program.
func poolJSON(t *testing.T, s *stack, name string, maxMachines int, setup, runnerPrefix string) string {
	t.Helper()
	s.gh.AddOrg(jobOwner)
	s.gh.AddRepo(jobOwner, jobRepo)
	cmd := []string{fakeRunnerBin, "-github", s.gh.URL(), "-webhook", s.webhook.URL, "-secret", secret, "-wait", "20s"}
	if runnerPrefix != "" {
		cmd = append([]string{"sh", "-c", runnerPrefix + ` exec "$@"`, "runner"}, cmd...)
	}
	pool := map[string]any{
		"name": name, "labels": jobLabels, "scope": map[string]any{"kind": "org", "org": jobOwner},
		"repositories": []string{jobOwner + "/" + jobRepo}, "runner_group_id": 2,
		"machine":      map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 2, "autosleep": "10m"},
		"max_machines": maxMachines, "install": map[string]any{"run": "mkdir -p \"$HOME/actions-runner\""},
		"runner_command": cmd, "pickup_timeout": "4s",
	}
	if setup != "" {
		pool["setup"] = []map[string]any{{"name": "toolchain", "run": setup}}
	}
	b, err := json.Marshal(map[string]any{"pools": []any{pool}})
	require.NoError(t, err)
	return string(b)
}

func (s *stack) queueJob(t *testing.T, id int64, delivery string) int {
	t.Helper()
	body, err := ghfixture.WorkflowJob("queued", ghfixture.Job{
		ID: id, RunID: id * 10, Name: fmt.Sprintf("build-%d", id), Owner: jobOwner, Repo: jobRepo, Org: jobOwner, Labels: jobLabels,
	})
	require.NoError(t, err)
	code, _ := s.post("workflow_job", delivery, body, intake.SignatureHeader([]byte(secret), body))
	return code
}

func (s *stack) inventory(t *testing.T, pool string) runnerapi.Inventory {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := s.tc.QueryWorkflow(ctx, runnerapi.PoolWorkflowID(pool), "", runnerapi.QueryInventory)
	require.NoError(t, err)
	var inv runnerapi.Inventory
	require.NoError(t, v.Get(&inv))
	return inv
}

// tryInventory is a pool's inventory, if the pool answers.
func (s *stack) tryInventory(pool string) (runnerapi.Inventory, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var inv runnerapi.Inventory
	v, err := s.tc.QueryWorkflow(ctx, runnerapi.PoolWorkflowID(pool), "", runnerapi.QueryInventory)
	if err != nil || v.Get(&inv) != nil {
		return inv, false
	}
	return inv, true
}

func (s *stack) waitJobs(t *testing.T, ids []int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, id := range ids {
		if err := s.tc.GetWorkflow(ctx, runnerapi.JobWorkflowID(id), "").Get(ctx, nil); err != nil {
			s.dump(t, ids)
			t.Fatalf("job %d: %v", id, err)
		}
		job, ok := s.gh.Job(id)
		require.True(t, ok)
		assert.Equal(t, githubtest.JobCompleted, job.Status, "job %d ran to completion on GitHub's side", id)
	}
}

func TestRunnerPoolRunsTwentyJobsOnFiveMachines(t *testing.T) {
	s := newStackWith(t, func(s *stack) string { return poolJSON(t, s, "linux", 5, "", "") })
	ids := nextJobIDs(20)
	s.keepPoolHistories("", "linux", ids[0])
	for _, id := range ids {
		s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: id, Labels: jobLabels, Duration: 300 * time.Millisecond})
	}
	peak := s.watchPeakMachines()
	s.queueJobs(t, ids)
	// Redeliveries (same delivery, and GitHub's retry with a new delivery ID) add nothing.
	for _, id := range ids[:5] {
		assert.Equal(t, http.StatusOK, s.queueJob(t, id, fmt.Sprintf("queued-%d", id)))
		s.queueJob(t, id, fmt.Sprintf("queued-again-%d", id))
	}
	s.waitJobs(t, ids)

	assert.LessOrEqual(t, peak(), int64(5), "never more than max_machines machines")
	stats := s.emu.Stats()
	assert.LessOrEqual(t, stats.Creates, int64(5))
	checkLeasesPerAttempt(t, s, ids)
	require.Eventually(t, func() bool {
		for _, m := range s.emu.Stats().Machines {
			if m.Phase != dedalus.PhaseSleeping {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "machines are asleep at the end")
	ctx := context.Background()
	n, err := s.tc.CountWorkflow(ctx, countQuery(fmt.Sprintf(
		"DrydockPool = 'linux' AND WorkflowType = 'RunnerJob' AND DrydockJobID >= %d AND DrydockJobID <= %d", ids[0], ids[len(ids)-1])))
	require.NoError(t, err)
	assert.EqualValues(t, 20, n.GetCount(), "one RunnerJob per job, however often queued was delivered")
}

// keepPoolHistories records the run of pool, that of job jobID and the
// pool's first provision as runner-pool<suffix>, runner-job<suffix> and
// runner-provision<suffix>.
func (s *stack) keepPoolHistories(suffix, pool string, jobID int64) {
	s.t.Helper()
	s.keepHistories(map[string]runMatcher{
		"runner-pool" + suffix:      withID(runnerapi.PoolWorkflowID(pool)),
		"runner-job" + suffix:       withID(runnerapi.JobWorkflowID(jobID)),
		"runner-provision" + suffix: withID(runnerapi.ProvisionWorkflowID(pool, 1)),
	})
}

// queueJobs delivers a queued workflow_job for each of ids: accepted.
func (s *stack) queueJobs(t *testing.T, ids []int64) {
	t.Helper()
	for _, id := range ids {
		require.Equal(t, http.StatusAccepted, s.queueJob(t, id, fmt.Sprintf("queued-%d", id)))
	}
}

// watchPeakMachines samples the emulator's live machines in the
// background; the function it returns stops the sampling and returns the
// peak.
func (s *stack) watchPeakMachines() func() int64 {
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if n := int64(s.emu.Stats().LiveMachines); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(stop)
		wg.Wait()
		return peak.Load()
	}
}

// checkLeasesPerAttempt checks the linux pool's inventory once jobs ids
// ran: every machine reused, one lease per job attempt, nothing queued.
func checkLeasesPerAttempt(t *testing.T, s *stack, ids []int64) {
	inv := s.inventory(t, "linux")
	total := 0
	for _, m := range inv.Machines {
		total += m.Jobs
		assert.GreaterOrEqual(t, m.Jobs, 2, "machine %s was reused", m.MachineID)
	}
	// One lease per job attempt. A job gets a second attempt only when its
	// runner took another queued job (GitHub hands a runner any queued job
	// its labels match) and its own was still queued at its pickup
	// timeout: rare, but a slow machine makes it happen.
	attempts := 0
	for _, id := range ids {
		attempts += jobStatusOf(t, s, id).Attempt
	}
	assert.Equal(t, attempts, total, "one lease per job attempt")
	t.Logf("%d attempts for %d jobs", attempts, len(ids))
	assert.Empty(t, inv.Queue)
}

// A worker killed while a machine is being provisioned: no duplicate machine, and the job still runs.
func TestRunnerWorkerKilledDuringProvisioning(t *testing.T) {
	s := newStackWith(t, func(s *stack) string { return poolJSON(t, s, "slow", 2, "sleep 2", "") })
	id := nextJobIDs(1)[0]
	s.keepHistories(map[string]runMatcher{"runner-provision-worker-killed": withID(runnerapi.ProvisionWorkflowID("slow", 1))})
	s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: id, Labels: jobLabels, Duration: 200 * time.Millisecond})
	require.Equal(t, http.StatusAccepted, s.queueJob(t, id, "slow-queued"))
	require.Eventually(t, func() bool { return s.emu.Stats().Executions >= 1 }, 30*time.Second, 20*time.Millisecond, "setup running")
	s.stopWorker(syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
	s.startWorker()
	s.waitJobs(t, []int64{id})
	assert.EqualValues(t, 1, s.emu.Stats().Creates, "no duplicate machine")
}

// A machine that cannot be woken (here: lost behind the pool's back) is
// replaced; a job whose runner never picks it up is tried on another machine.
func TestRunnerBrokenMachineReplacedAndJobRetried(t *testing.T) {
	marker := filepath.Join(jobWritableDir(t), "first-runner-started")
	// The first runner ever started exits at once without taking a job.
	prefix := fmt.Sprintf(`if [ ! -e %q ]; then touch %q; exit 0; fi;`, marker, marker)
	s := newStackWith(t, func(s *stack) string { return poolJSON(t, s, "flaky", 3, "", prefix) })

	ids := nextJobIDs(2)
	first, second := ids[0], ids[1]
	s.keepHistories(map[string]runMatcher{
		"runner-job-not-picked-up-retried": withID(runnerapi.JobWorkflowID(first)),
		"runner-job-lost-machine-replaced": withID(runnerapi.JobWorkflowID(second)),
		"runner-pool-lost-machine":         withID(runnerapi.PoolWorkflowID("flaky")),
	})
	s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: first, Labels: jobLabels, Duration: 100 * time.Millisecond})
	require.Equal(t, http.StatusAccepted, s.queueJob(t, first, "flaky-1"))
	s.waitJobs(t, []int64{first})
	st := jobStatusOf(t, s, first)
	assert.Equal(t, 2, st.Attempt, "not picked up on the first machine, run on the second")

	// Lose an idle machine behind the pool's back: the next job's wake fails.
	lost := s.onlyMachineLeft(t, "flaky")
	c, err := dedalus.New(dedalus.Options{BaseURL: s.emu.URL(), APIKey: s.emu.APIKey()})
	require.NoError(t, err)
	_, err = c.DeleteMachine(context.Background(), lost, dedalus.Mutation{IdempotencyKey: "e2e-lose-" + lost})
	require.NoError(t, err)
	s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: second, Labels: jobLabels, Duration: 100 * time.Millisecond})
	require.Equal(t, http.StatusAccepted, s.queueJob(t, second, "flaky-2"))
	s.waitJobs(t, []int64{second})
	inv := s.inventory(t, "flaky")
	for _, m := range inv.Machines {
		assert.NotEqual(t, lost, m.MachineID, "the broken machine left the inventory")
	}
	desc, err := s.tc.DescribeWorkflowExecution(context.Background(), runnerapi.JobWorkflowID(second), "")
	require.NoError(t, err)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.GetWorkflowExecutionInfo().GetStatus())
}

// onlyMachineLeft drains, through the pool, every machine of the pool but
// one, and returns that one once the pool holds nothing else: the next job
// can only lease it. (Machines deleted behind the pool's back instead would
// be as broken as the one the test means to lose, and the pool would pick
// any of them; a machine still provisioning would not be seen at all.)
func (s *stack) onlyMachineLeft(t *testing.T, pool string) string {
	t.Helper()
	inv := s.inventory(t, pool)
	require.NotEmpty(t, inv.Machines)
	keep := inv.Machines[0].MachineID
	require.NotEmpty(t, keep, "a machine provisioned for the first job")
	require.Eventually(t, func() bool {
		// (No require in here: Eventually runs this off the test's goroutine.)
		inv, ok := s.tryInventory(pool)
		if !ok {
			return false
		}
		for _, m := range inv.Machines {
			if m.MachineID != "" && m.MachineID != keep {
				_ = s.tc.SignalWorkflow(context.Background(), runnerapi.PoolWorkflowID(pool), "",
					runnerapi.SignalDrain, runnerapi.DrainRequest{MachineID: m.MachineID})
			}
		}
		return len(inv.Machines) == 1 && inv.Machines[0].MachineID == keep
	}, 30*time.Second, 100*time.Millisecond, "every machine of pool %s but %s drained", pool, keep)
	return keep
}

// dump logs both sides of the accounting when a run gets stuck.
func (s *stack) dump(t *testing.T, ids []int64) {
	for _, j := range s.gh.Jobs() {
		t.Logf("github job %d: %s runner=%s", j.ID, j.Status, j.RunnerName)
	}
	for _, r := range s.gh.AllRunners() {
		t.Logf("github runner %s: %+v", r.Name, r)
	}
	for _, id := range ids {
		v, err := s.tc.QueryWorkflow(context.Background(), runnerapi.JobWorkflowID(id), "", runnerapi.QueryJobStatus)
		if err != nil {
			t.Logf("job %d: %v", id, err)
			continue
		}
		var st runnerapi.RunnerJobStatus
		_ = v.Get(&st)
		t.Logf("job %d: %+v", id, st)
	}
	for _, p := range []string{"linux", "slow", "flaky"} {
		if v, err := s.tc.QueryWorkflow(context.Background(), runnerapi.PoolWorkflowID(p), "", runnerapi.QueryInventory); err == nil {
			var inv runnerapi.Inventory
			_ = v.Get(&inv)
			t.Logf("pool %s: %+v", p, inv)
		}
	}
}

func jobStatusOf(t *testing.T, s *stack, id int64) runnerapi.RunnerJobStatus {
	t.Helper()
	v, err := s.tc.QueryWorkflow(context.Background(), runnerapi.JobWorkflowID(id), "", runnerapi.QueryJobStatus)
	require.NoError(t, err)
	var st runnerapi.RunnerJobStatus
	require.NoError(t, v.Get(&st))
	return st
}

func countQuery(q string) *workflowservice.CountWorkflowExecutionsRequest {
	return &workflowservice.CountWorkflowExecutionsRequest{Query: q}
}

// Jobs cancelled while they wait for a machine leave the pool's queue at
// once (a cancelled RunnerJob and a job GitHub reports cancelled), so the
// machine goes back to the pool after the job that holds it, not to them.
func TestRunnerCancelledQueuedJobsLeaveTheQueue(t *testing.T) {
	s := newStackWith(t, func(s *stack) string { return poolJSON(t, s, "queue", 1, "sleep 2", "") })
	ids := nextJobIDs(3)
	running, cancelledWorkflow, cancelledJob := ids[0], ids[1], ids[2]
	s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: running, Labels: jobLabels, Duration: 2 * time.Second})
	require.Equal(t, http.StatusAccepted, s.queueJob(t, running, "queue-0"))
	require.Eventually(t, func() bool {
		inv, ok := s.tryInventory("queue")
		return ok && slices.Contains(inv.Queue, running)
	}, 30*time.Second, 50*time.Millisecond, "the first job is first in line")
	for i, id := range ids[1:] {
		require.Equal(t, http.StatusAccepted, s.queueJob(t, id, fmt.Sprintf("queue-%d", i+1)))
	}
	require.Eventually(t, func() bool {
		inv, ok := s.tryInventory("queue")
		return ok && slices.Contains(inv.Queue, cancelledWorkflow) && slices.Contains(inv.Queue, cancelledJob)
	}, 30*time.Second, 50*time.Millisecond, "two jobs wait behind the first")

	ctx := context.Background()
	require.NoError(t, s.tc.CancelWorkflow(ctx, runnerapi.JobWorkflowID(cancelledWorkflow), ""))
	body, err := ghfixture.WorkflowJob("completed", ghfixture.Job{
		ID: cancelledJob, RunID: cancelledJob * 10, Name: "cancelled", Owner: jobOwner, Repo: jobRepo, Org: jobOwner, Labels: jobLabels, Conclusion: "cancelled",
	})
	require.NoError(t, err)
	code, _ := s.post("workflow_job", "queue-cancelled", body, intake.SignatureHeader([]byte(secret), body))
	require.Equal(t, http.StatusAccepted, code)

	require.Eventually(t, func() bool {
		inv, ok := s.tryInventory("queue")
		return ok && !slices.Contains(inv.Queue, cancelledWorkflow) && !slices.Contains(inv.Queue, cancelledJob)
	}, 20*time.Second, 50*time.Millisecond, "both withdrew their places")
	s.waitJobs(t, []int64{running})
	require.Eventually(t, func() bool {
		inv, ok := s.tryInventory("queue")
		return ok && len(inv.Queue) == 0 && inv.Counts[runnerapi.MachineBusy] == 0 && inv.Counts[runnerapi.MachineIdle] == 1
	}, 30*time.Second, 100*time.Millisecond, "the machine is free once the first job is done")
	desc, err := s.tc.DescribeWorkflowExecution(ctx, runnerapi.JobWorkflowID(cancelledWorkflow), "")
	require.NoError(t, err)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, desc.GetWorkflowExecutionInfo().GetStatus())
	st := jobStatusOf(t, s, cancelledJob)
	assert.Equal(t, runnerapi.JobAbandoned, st.Phase)
	assert.Empty(t, st.MachineID, "never got a machine")
}
