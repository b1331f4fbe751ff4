package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
)

// procCmdlines is every host process's command line (pid -> argv joined by
// spaces): the emulator runs a machine's commands as host processes, so this
// is what `ps` on the machine shows.
func procCmdlines(t *testing.T) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	out := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone meanwhile, or a kernel thread
		}
		out[pid] = strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
	}
	return out
}

// catchJobRunning queues a job of 3 seconds and, once its step has
// written its environment to steps, reads the process table while the job
// runs; it returns the job's ID, the step's environment and the command
// lines.
func (s *stack) catchJobRunning(t *testing.T, steps string) (int64, string, map[int]string) {
	t.Helper()
	id := nextJobIDs(1)[0]
	s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: id, Labels: jobLabels, Duration: 3 * time.Second})
	require.Equal(t, http.StatusAccepted, s.queueJob(t, id, fmt.Sprintf("queued-%d", id)))

	stepEnv := waitStepEnv(t, steps, id)
	cmdlines := procCmdlines(t) // while the job runs
	job, _ := s.gh.Job(id)
	require.Equal(t, githubtest.JobInProgress, job.Status, "the process table was read while the job ran")
	return id, stepEnv, cmdlines
}

// waitStepEnv waits until the stand-in runner's job step of job id wrote
// its environment (the job is then running) and returns it.
func waitStepEnv(t *testing.T, dir string, id int64) string {
	t.Helper()
	file := filepath.Join(dir, fmt.Sprintf("job-%d.env", id))
	var env []byte
	require.Eventually(t, func() bool {
		var err error
		env, err = os.ReadFile(file)
		return err == nil
	}, 90*time.Second, 50*time.Millisecond, "job %d's step ran", id)
	return string(env)
}

// assertNoSecrets checks a job step's environment and the process table
// for the secrets.
func assertNoSecrets(t *testing.T, what string, cmdlines map[int]string, stepEnv string, secrets []string) {
	t.Helper()
	for _, sec := range secrets {
		for pid, cl := range cmdlines {
			assert.NotContains(t, cl, sec, "%s: process %d's command line carries a secret", what, pid)
		}
		assert.NotContains(t, stepEnv, sec, "%s: the job step's environment carries a secret", what)
	}
	for _, line := range strings.Split(stepEnv, "\n") {
		name, _, _ := strings.Cut(line, "=")
		assert.False(t, strings.HasPrefix(name, "ACTIONS_RUNNER_INPUT_"), "%s: the job step inherits %s", what, name)
		assert.NotContains(t, []string{"DRYDOCK_JIT_CONFIG", "DRYDOCK_RUNNER_TOKEN"}, name, "%s: the job step inherits %s", what, name)
	}
}

// Issue 14, point 5: a JIT runner started with the default runner command
// (run.sh, here a stand-in that runs the stand-in runner as actions/runner's
// run.sh runs Runner.Listener) gets its JIT config in no process's argv, and
// a job step it runs does not inherit it, nor any DRYDOCK_* secret.
func TestRunnerJITConfigIsInNoArgvAndNoJobStep(t *testing.T) {
	steps := jobWritableDir(t)
	s := newStackWith(t, func(s *stack) string {
		s.gh.AddOrg(jobOwner)
		s.gh.AddRepo(jobOwner, jobRepo)
		install := harness.JITRunnerInstall(fakeRunnerBin, "-github", s.gh.URL(), "-webhook", s.webhook.URL, "-secret", secret,
			"-wait", "20s", "-step-env-dir", steps)
		pool := map[string]any{
			"name": "jit-secrets", "labels": jobLabels, "scope": map[string]any{"kind": "org", "org": jobOwner},
			"repositories": []string{jobOwner + "/" + jobRepo}, "runner_group_id": 2,
			"machine":      map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 2, "autosleep": "10m"},
			"max_machines": 1, "install": map[string]any{"name": "install the stand-in run.sh", "run": install},
			"pickup_timeout": "10s", // no runner_command: Drydock's default, run.sh
		}
		b, err := json.Marshal(map[string]any{"pools": []any{pool}})
		require.NoError(t, err)
		return string(b)
	})
	id, stepEnv, cmdlines := s.catchJobRunning(t, steps)
	var runSh, runner int
	for _, cl := range cmdlines {
		// The wrappers that start it (its PID namespace) carry the
		// default runner command's text, "$HOME/actions-runner/run.sh".
		if strings.Contains(cl, "actions-runner/run.sh") && !strings.Contains(cl, "$HOME/actions-runner/run.sh") {
			runSh++
		}
		if strings.HasPrefix(cl, fakeRunnerBin+" ") && !strings.Contains(cl, "-persistent") {
			runner++
		}
	}
	require.Equal(t, 1, runSh, "run.sh is running")
	require.Equal(t, 1, runner, "the runner is running")
	assert.Contains(t, stepEnv, "DEDALUS_MACHINE_ID=", "the step ran on the machine, in the runner's environment")
	configs := s.gh.JITConfigs()
	require.NotEmpty(t, configs)
	assertNoSecrets(t, "JIT", cmdlines, stepEnv, configs)
	s.waitJobs(t, []int64{id})
}

// Issue 14, point 5: a persistent runner's registration token is in no
// argv while config.sh registers the runner (config.sh is read from the
// process table while it waits for GitHub's answer) or while a job runs,
// and a job step does not inherit it.
func TestRunnerRegistrationTokenIsInNoArgvAndNoJobStep(t *testing.T) {
	steps := jobWritableDir(t)
	var mu sync.Mutex
	var atRegistration []map[int]string
	s := newStackWith(t, func(s *stack) string {
		s.gh.OnRunnerRegister(func(string) {
			cl := procCmdlines(t)
			mu.Lock()
			defer mu.Unlock()
			atRegistration = append(atRegistration, cl)
		})
		return persistentPoolJSON(t, s, "pers-secrets", 1, "-step-env-dir", steps)
	})
	id, stepEnv, cmdlines := s.catchJobRunning(t, steps)
	tokens := s.gh.RegistrationTokens()
	require.NotEmpty(t, tokens)
	assertNoSecrets(t, "persistent, while the job runs", cmdlines, stepEnv, tokens)

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, atRegistration, "the runner registered")
	for _, cl := range atRegistration {
		var configSh int
		for _, c := range cl {
			if f := strings.Fields(c); len(f) > 1 && filepath.Base(f[1]) == "config.sh" { // sh .../config.sh ...
				configSh++
			}
		}
		require.Equal(t, 1, configSh, "config.sh was running when the process table was read")
		assertNoSecrets(t, "persistent, while config.sh registers", cl, "", tokens)
	}
	s.waitJobs(t, []int64{id})
}

// jobWritableDir is a temporary directory the runner jobs of a test (the
// pool machines' unprivileged runner user) can write to.
func jobWritableDir(t *testing.T) string {
	t.Helper()
	dir, err := harness.JobWritableDir()
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
