package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

func TestRunnerJobRunsOnItsOwnRunner(t *testing.T) {
	w := &jobWorld{}
	env := newJobEnv(t, w)
	own := runnerapi.RunnerName(jobTestPool, 42, 1)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("in_progress", 42, own, "d1")) }, 10*time.Second)
	env.RegisterDelayedCallback(func() { assert.Equal(t, runnerapi.JobRunning, jobStatus(t, env).Phase) }, 20*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 42, own, "d2")) }, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(42))
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"m1"}, w.wakes)
	assert.Equal(t, []string{own}, w.started)
	assert.Empty(t, w.removed)
	require.Len(t, w.releases, 1, "the machine that ran the job is released once")
	assert.Equal(t, own, w.releases[0].RunnerName)
	assert.Empty(t, w.releases[0].MachineID)
	st := jobStatus(t, env)
	assert.Equal(t, runnerapi.JobCompleted, st.Phase)
	assert.Equal(t, "success", st.Conclusion)
	assert.Equal(t, own, st.RanOn)
}

// GitHub hands the runner job 42 woke to another job; job 42 runs on the
// other job's runner. Each completion releases the machine that ran it.
func TestRunnerJobStolenJobAccounting(t *testing.T) {
	for _, tc := range []struct {
		name        string
		remove      activities.RemoveRunnerResult
		ownReleased bool
	}{
		{"own runner busy with the other job", activities.RemoveRunnerResult{Busy: true}, false},
		{"own runner idle", activities.RemoveRunnerResult{Removed: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &jobWorld{remove: tc.remove}
			env := newJobEnv(t, w)
			other := runnerapi.RunnerName(jobTestPool, 43, 1)
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("in_progress", 42, other, "d1")) }, 10*time.Second)
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 42, other, "d2")) }, time.Minute)
			env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(42))
			require.NoError(t, env.GetWorkflowError())
			own := runnerapi.RunnerName(jobTestPool, 42, 1)
			assert.Equal(t, []string{own}, w.removed, "this job's idle runner is removed")
			require.NotEmpty(t, w.releases)
			assert.Equal(t, runnerapi.ReleaseRequest{RunnerName: other, JobID: 42, Reason: "job completed", Repo: "octo/app"}, w.releases[0],
				"the machine of the runner that ran the job is released")
			if tc.ownReleased {
				require.Len(t, w.releases, 2)
				assert.Equal(t, "m1", w.releases[1].MachineID)
				assert.Equal(t, own, w.releases[1].RunnerName, "names the lease, so a re-leased machine is never freed")
			} else {
				assert.Len(t, w.releases, 1, "the busy runner's own job releases its machine")
			}
		})
	}
}

func TestRunnerJobNotPickedUpIsRetriedElsewhere(t *testing.T) {
	w := &jobWorld{remove: activities.RemoveRunnerResult{Removed: true}, github: activities.JobStatusResult{Status: "queued"}}
	env := newJobEnv(t, w)
	// Nothing happens for 2 minutes: GitHub says still queued; attempt 2 runs it.
	second := runOnSecondRunner(env, 7)
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, w.acquires, 2)
	assert.Equal(t, []string{"m1"}, w.acquires[1].Exclude, "the retry avoids the machine that did not pick the job up")
	assert.Equal(t, []string{runnerapi.RunnerName(jobTestPool, 7, 1)}, w.removed)
	require.Len(t, w.releases, 2)
	assert.Equal(t, "m1", w.releases[0].MachineID, "the first machine is returned")
	assert.Equal(t, second, w.releases[1].RunnerName)
	assert.Equal(t, 2, jobStatus(t, env).Attempt)
}

func TestRunnerJobReplacesMachineThatFailsToWake(t *testing.T) {
	w := &jobWorld{wakeFails: map[string]bool{"m1": true}}
	env := newJobEnv(t, w)
	second := runnerapi.RunnerName(jobTestPool, 9, 2)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 9, second, "d1")) }, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(9))
	require.NoError(t, env.GetWorkflowError())
	require.GreaterOrEqual(t, len(w.releases), 1)
	assert.True(t, w.releases[0].Broken, "the machine that failed to wake is reported broken")
	assert.Equal(t, "m1", w.releases[0].MachineID)
	assert.Equal(t, []string{"m1", "m2"}, w.wakes)
	assert.Equal(t, []string{second}, w.started)
}

// A job cancelled while it waits for a machine withdraws its request at
// once: the pool drops its place (and returns a lease it may have granted
// meanwhile), so it neither keeps the place nor provisions for it.
func TestRunnerJobCancelledWhileWaitingForMachine(t *testing.T) {
	w := &jobWorld{acquireIn: time.Hour}
	env := newJobEnv(t, w)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(runnerapi.SignalJobEvent, runnerapi.WorkflowJobEvent{Action: "completed", JobID: 5, Conclusion: "cancelled", DeliveryID: "d1"})
	}, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(5))
	require.NoError(t, env.GetWorkflowError())
	assert.Empty(t, w.wakes, "no machine is woken for a cancelled job")
	require.Len(t, w.withdraws, 1, "the request is withdrawn, not left in the queue")
	assert.Equal(t, int64(5), w.withdraws[0].JobID)
	assert.Equal(t, 1, w.withdraws[0].Attempt)
	assert.Empty(t, w.releases, "no lease was received: nothing to release")
	st := jobStatus(t, env)
	assert.Equal(t, runnerapi.JobAbandoned, st.Phase)
	assert.Equal(t, "cancelled", st.Conclusion)
}

// A RunnerJob whose workflow is cancelled while it waits for a machine
// withdraws its request from a disconnected context.
func TestRunnerJobWorkflowCancelledWhileAcquiringWithdraws(t *testing.T) {
	w := &jobWorld{acquireIn: time.Hour}
	env := newJobEnv(t, w)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(6))
	var ce *temporal.CanceledError
	require.True(t, errors.As(env.GetWorkflowError(), &ce), "%v", env.GetWorkflowError())
	require.Len(t, w.withdraws, 1)
	assert.Equal(t, runnerapi.WithdrawRequest{JobID: 6, Attempt: 1, Reason: "job workflow ended while waiting for a machine"}, w.withdraws[0])
	assert.Empty(t, w.wakes)
}

// A RunnerJob cancelled while its runner waits for the job stops (it does
// not spin on the cancelled timer) and gives its lease back: its idle
// runner is removed and the machine released.
func TestRunnerJobWorkflowCancelledWhileWaitingForPickupReleases(t *testing.T) {
	w := &jobWorld{remove: activities.RemoveRunnerResult{Removed: true}, github: activities.JobStatusResult{Status: "queued"}}
	env := newJobEnv(t, w)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	in := jobInput(8)
	in.Job.InstallationID = 778
	env.ExecuteWorkflow(runnerapi.RunnerJobName, in)
	var ce *temporal.CanceledError
	require.True(t, errors.As(env.GetWorkflowError(), &ce), "%v", env.GetWorkflowError())
	own := runnerapi.RunnerName(jobTestPool, 8, 1)
	assert.Equal(t, []string{own}, w.removed)
	require.Len(t, w.removeInputs, 1)
	assert.Equal(t, int64(778), w.removeInputs[0].InstallationID, "removed with the installation that registered it")
	require.Len(t, w.releases, 1)
	assert.Equal(t, "m1", w.releases[0].MachineID)
	assert.Equal(t, own, w.releases[0].RunnerName)
	assert.False(t, w.releases[0].Broken)
	assert.Empty(t, w.withdraws)
}

// A GitHub failure to start the runner is not the machine's fault: the
// machine is released as it is (not broken, not excluded), the job backs
// off and tries again. The runner is registered with the job's
// installation.
func TestRunnerJobGitHubFaultDoesNotCondemnMachine(t *testing.T) {
	w := &jobWorld{startFails: func(n int) error {
		if n == 1 {
			return temporal.NewNonRetryableApplicationError("403 Resource not accessible by integration", activities.ErrTypeGitHubRejected, nil)
		}
		return nil
	}}
	env := newJobEnv(t, w)
	second := runnerapi.RunnerName(jobTestPool, 10, 2)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 10, second, "d1")) }, time.Minute)
	in := jobInput(10)
	in.Job.InstallationID = 777
	env.ExecuteWorkflow(runnerapi.RunnerJobName, in)
	require.NoError(t, env.GetWorkflowError())
	require.NotEmpty(t, w.releases)
	assert.False(t, w.releases[0].Broken, "a GitHub error does not condemn the machine")
	assert.Equal(t, "m1", w.releases[0].MachineID)
	require.Len(t, w.acquires, 2)
	assert.Empty(t, w.acquires[1].Exclude, "the machine is healthy: it may be leased again")
	require.Len(t, w.startInputs, 2)
	assert.Equal(t, int64(777), w.startInputs[0].InstallationID, "the job's installation registers its runner")

	// A machine fault still condemns it.
	w = &jobWorld{startFails: func(n int) error {
		if n == 1 {
			return temporal.NewNonRetryableApplicationError("start runner: exit 127", activities.ErrTypeCommandFailed, nil)
		}
		return nil
	}}
	env = newJobEnv(t, w)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 10, second, "d1")) }, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(10))
	require.NoError(t, env.GetWorkflowError())
	require.NotEmpty(t, w.releases)
	assert.True(t, w.releases[0].Broken)
	require.Len(t, w.acquires, 2)
	assert.Equal(t, []string{"m1"}, w.acquires[1].Exclude)
}

func TestRunnerJobGivesUpAfterMaxAttempts(t *testing.T) {
	w := &jobWorld{wakeFails: map[string]bool{"m1": true, "m2": true, "m3": true}}
	env := newJobEnv(t, w)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(11))
	err := env.GetWorkflowError()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "after 3 attempts")
	assert.Len(t, w.releases, 3)
	for _, r := range w.releases {
		assert.True(t, r.Broken)
	}
}

// A lost completed webhook does not leak the machine: a running job is
// checked with GitHub periodically.
func TestRunnerJobLostCompletedWebhook(t *testing.T) {
	own := runnerapi.RunnerName(jobTestPool, 12, 1)
	w := &jobWorld{github: activities.JobStatusResult{Status: "completed", Conclusion: "failure", RunnerName: own}}
	env := newJobEnv(t, w)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("in_progress", 12, own, "d1")) }, 10*time.Second)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(12))
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, w.releases, 1)
	assert.Equal(t, own, w.releases[0].RunnerName)
	assert.Equal(t, "failure", jobStatus(t, env).Conclusion)
}

// A job whose runner took another job is not stuck: it waits for the next
// free runner instead of leasing another machine.
func TestRunnerJobWaitsWhenItsRunnerTookAnotherJob(t *testing.T) {
	w := &jobWorld{remove: activities.RemoveRunnerResult{Busy: true}, github: activities.JobStatusResult{Status: "queued"}}
	env := newJobEnv(t, w)
	other := runnerapi.RunnerName(jobTestPool, 14, 1)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 13, other, "d1")) }, 10*time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(13))
	require.NoError(t, env.GetWorkflowError())
	assert.Len(t, w.acquires, 1, "no second machine for a job that is only waiting for capacity")
	require.Len(t, w.releases, 1)
	assert.Equal(t, other, w.releases[0].RunnerName)
}

// A job still queued after its own runner ran another job and went away
// gets another runner: nothing else is sure to come for it (make chaos
// starved one that waited on).
func TestRunnerJobStartsAnotherRunnerWhenItsRunnerIsGone(t *testing.T) {
	w := &jobWorld{remove: activities.RemoveRunnerResult{NotFound: true}, github: activities.JobStatusResult{Status: "queued"}}
	env := newJobEnv(t, w)
	runOnSecondRunner(env, 15)
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, w.acquires, 2, "a second attempt, with a runner of its own")
	assert.Equal(t, 2, jobStatus(t, env).Attempt)
	assert.Equal(t, runnerapi.JobCompleted, jobStatus(t, env).Phase)
}

// A job that ran on another job's runner while it still waited for a
// machine frees that runner's machine at once (waiting for its own lease
// first could deadlock a full pool), and still starts its own runner for the
// job whose runner it took; unused, that runner is removed and its machine
// returned.
func TestRunnerJobCompletedWhileQueuedReleasesAtOnce(t *testing.T) {
	w := &jobWorld{acquireIn: time.Hour}
	env := newJobEnv(t, w)
	other := runnerapi.RunnerName(jobTestPool, 99, 1)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 15, other, "d1")) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		require.Len(t, w.releases, 1, "released before this job's own lease arrives")
		assert.Equal(t, other, w.releases[0].RunnerName)
	}, 30*time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(15))
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, w.releases, 2)
	assert.Equal(t, []string{"m1"}, w.wakes, "every queued job wakes one machine")
	assert.Equal(t, []string{runnerapi.RunnerName(jobTestPool, 15, 1)}, w.started)
	assert.Equal(t, []string{runnerapi.RunnerName(jobTestPool, 15, 1)}, w.removed, "unused after the pickup window")
	assert.Equal(t, "m1", w.releases[1].MachineID, "and its machine returned")
}

// Persistent mode: a job GitHub runs on another machine's runner tells its
// pool once (so the busy machine stays leased to it); a job that ran on
// its own machine's runner finishes at once, its machine released by the
// completion.
func TestRunnerJobPersistentTellsPoolWhichRunnerRunsIt(t *testing.T) {
	w := &jobWorld{mode: pools.ModePersistent}
	env := newJobEnv(t, w)
	other := runnerapi.PersistentRunnerName(jobTestPool, "m7")
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("in_progress", 40, other, "d1")) }, 10*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("in_progress", 40, other, "d2")) }, 20*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 40, other, "d3")) }, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(40))
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []runnerapi.RunnerStarted{{JobID: 40, RunnerName: other}}, w.started2)
	assert.Empty(t, w.started, "no JIT runner in persistent mode")

	w = &jobWorld{mode: pools.ModePersistent}
	env = newJobEnv(t, w)
	own := runnerapi.PersistentRunnerName(jobTestPool, "m1")
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("in_progress", 41, own, "d1")) }, 10*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 41, own, "d2")) }, 20*time.Second)
	var done time.Time
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(41))
	require.NoError(t, env.GetWorkflowError())
	done = jobStatus(t, env).DoneAt
	assert.Empty(t, w.started2, "its own machine's runner: nothing to tell")
	require.Len(t, w.releases, 1, "released once, by the completion; no own release after a pickup window")
	assert.Equal(t, runnerapi.ReleaseRequest{RunnerName: own, JobID: 41, Reason: "job completed", Repo: "octo/app"}, w.releases[0])
	assert.False(t, done.IsZero())
}

// Cancelled while it wakes its machine (no runner started yet), a job
// releases its lease: there is no runner of its own to look for.
func TestRunnerJobWorkflowCancelledWhileWakingReleases(t *testing.T) {
	w := &jobWorld{wakeIn: time.Minute, remove: activities.RemoveRunnerResult{NotFound: true}}
	env := newJobEnv(t, w)
	env.RegisterDelayedCallback(env.CancelWorkflow, 30*time.Second)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(16))
	var ce *temporal.CanceledError
	require.True(t, errors.As(env.GetWorkflowError(), &ce), "%v", env.GetWorkflowError())
	require.Len(t, w.releases, 1)
	assert.Equal(t, "m1", w.releases[0].MachineID)
	assert.False(t, w.releases[0].Broken)
	assert.Empty(t, w.started)
}

// Persistent mode: a job GitHub ran on another machine's runner while it
// still waited for a machine gives up its place at once (the runner that
// ran it takes the next job: no machine needs waking for it) and frees
// that runner; it never leases or wakes a machine.
func TestRunnerJobPersistentCompletedWhileQueuedWithdraws(t *testing.T) {
	w := &jobWorld{mode: pools.ModePersistent, acquireIn: time.Hour}
	env := newJobEnv(t, w)
	other := runnerapi.PersistentRunnerName(jobTestPool, "m7")
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("in_progress", 27, other, "d1")) }, 10*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", 27, other, "d2")) }, time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(27))
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []runnerapi.RunnerStarted{{JobID: 27, RunnerName: other}}, w.started2)
	assert.Equal(t, []runnerapi.ReleaseRequest{{RunnerName: other, JobID: 27, Reason: "job completed", Repo: "octo/app"}}, w.releases)
	require.Len(t, w.withdraws, 1, "its place is given up at once")
	assert.Equal(t, int64(27), w.withdraws[0].JobID)
	assert.Equal(t, 1, w.withdraws[0].Attempt)
	assert.Empty(t, w.wakes, "no machine woken for a job that already ran")
	st := jobStatus(t, env)
	assert.Equal(t, runnerapi.JobCompleted, st.Phase)
	assert.Equal(t, other, st.RanOn)
}

// runOnSecondRunner runs job: nothing happens until 3m, when the runner of
// its second attempt (returned) picks it up and completes it.
func runOnSecondRunner(env *testsuite.TestWorkflowEnvironment, job int64) string {
	second := runnerapi.RunnerName(jobTestPool, job, 2)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("in_progress", job, second, "d1"))
		env.SignalWorkflow(runnerapi.SignalJobEvent, jobEvent("completed", job, second, "d2"))
	}, 3*time.Minute)
	env.ExecuteWorkflow(runnerapi.RunnerJobName, jobInput(job))
	return second
}
