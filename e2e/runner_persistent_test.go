package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// persistentPoolJSON is a persistent-mode pool: Drydock's registration
// script runs config.sh and svc.sh stand-ins that register the stand-in
// runner with a registration token and start it as the machine's runner
// service, which takes job after job.
// runnerArgs are more arguments for the stand-in runner.
func persistentPoolJSON(t *testing.T, s *stack, name string, maxMachines int, runnerArgs ...string) string {
	t.Helper()
	s.gh.AddOrg(jobOwner)
	s.gh.AddRepo(jobOwner, jobRepo)
	install := harness.PersistentRunnerInstall(fakeRunnerBin, append([]string{"-github", s.gh.URL(), "-webhook", s.webhook.URL, "-secret", secret}, runnerArgs...)...)
	pool := map[string]any{
		"name": name, "labels": jobLabels, "scope": map[string]any{"kind": "org", "org": jobOwner}, "mode": "persistent",
		"repositories": []string{jobOwner + "/" + jobRepo}, "allow_default_group": true,
		"machine":      map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 2, "autosleep": "10m"},
		"max_machines": maxMachines, "install": map[string]any{"name": "install the stand-in runner", "run": install},
		"pickup_timeout": "10s",
	}
	b, err := json.Marshal(map[string]any{"pools": []any{pool}})
	require.NoError(t, err)
	return string(b)
}

// Persistent mode: GitHub hands each queued job to whichever awake runner
// asks first, so jobs run on other jobs' machines. Every job completes,
// each machine's runner registers once and stays registered, and the pool
// ends with every machine free and none busy.
func TestRunnerPersistentPoolRunsJobsOnWhicheverRunnerTakesThem(t *testing.T) {
	s := newStackWith(t, func(s *stack) string { return persistentPoolJSON(t, s, "pers", 2) })
	ids := nextJobIDs(6)
	s.keepPoolHistories("-persistent", "pers", ids[0])
	for _, id := range ids {
		s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: id, Labels: jobLabels, Duration: 400 * time.Millisecond})
	}
	s.queueJobs(t, ids)
	s.waitJobs(t, ids)

	runners := s.gh.Runners(pools.Scope{Kind: pools.ScopeOrg, Org: jobOwner})
	assert.LessOrEqual(t, len(runners), 2, "one persistent runner per machine")
	ranOn := map[string]int{}
	for _, r := range runners {
		assert.False(t, r.Ephemeral, "%s is persistent", r.Name)
	}
	for _, id := range ids {
		j, _ := s.gh.Job(id)
		ranOn[j.RunnerName]++
	}
	assert.LessOrEqual(t, len(ranOn), 2, "jobs ran on the pool's persistent runners: %v", ranOn)
	assert.LessOrEqual(t, s.emu.Stats().Creates, int64(2))
	services := processUsers("-persistent", s.webhook.URL)
	require.NotEmpty(t, services, "the machines' runner services run")
	for pid, uid := range services {
		assert.NotEqual(t, "0", uid, "runner service %d runs as the unprivileged runner user, not root", pid)
	}
	require.Eventually(t, func() bool {
		inv, ok := s.tryInventory("pers")
		return ok && len(inv.Queue) == 0 && inv.Counts[runnerapi.MachineBusy] == 0 && inv.Counts[runnerapi.MachineIdle] == len(inv.Machines)
	}, 60*time.Second, 100*time.Millisecond, "every machine is free once the jobs are done")
}

// processUsers maps the host's processes whose command line holds every one
// of parts to their real user ID.
func processUsers(parts ...string) map[int]string {
	out := map[int]string{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		cmdline := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		all := true
		for _, p := range parts {
			all = all && strings.Contains(cmdline, p)
		}
		status, err := os.ReadFile(filepath.Join(d, "status"))
		if !all || err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
				pid, _ := strconv.Atoi(filepath.Base(d))
				out[pid] = f[1]
			}
		}
	}
	return out
}
