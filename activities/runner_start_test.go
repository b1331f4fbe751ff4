package activities_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

func jitRunner(t *testing.T, r *runnerRig, name string) githubtest.Runner {
	t.Helper()
	for _, x := range r.srv.Runners(runnerScope) {
		if x.Name == name {
			return x
		}
	}
	t.Fatalf("no runner %s", name)
	return githubtest.Runner{}
}

// assertRunnerIsolated checks that the started runner is still running
// after the execution that started it ended, in a session of its own, as
// the first process of a PID namespace of its own (whatever its job leaves
// dies with it), as the runner user with no new privileges.
func assertRunnerIsolated(t *testing.T, r *runnerRig) {
	t.Helper()
	r.waitFile(t, "/home/runner/runner.pidns")
	assert.Equal(t, "1\n", r.sh(t, `cat "/home/runner/runner.pid"`), "the runner is PID 1 of its namespace")
	assert.Equal(t, activities.RunnerUser+"\n", r.sh(t, `cat /home/runner/runner.user`), "the runner runs as the runner user")
	assert.Equal(t, "NoNewPrivs:\t1\n", r.sh(t, `cat /home/runner/runner.nnp`), "with no new privileges (no sudo, no setuid)")
	assert.Equal(t, "700\n", r.sh(t, `stat -c %a "$HOME/.drydock"`), "Drydock's state is root's alone")
	assert.Equal(t, "alive own-namespace own-session\n", r.sh(t, `ns=$(cat "/home/runner/runner.pidns")
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] || continue
  kill -0 "${p#/proc/}" && printf alive && break
done
[ "$ns" != "$(readlink /proc/self/ns/pid)" ] && printf " own-namespace"
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] || continue
  sid=$(sed 's/^.*) //' "$p/stat" | cut -d' ' -f4)
  [ "$sid" != "$(sed 's/^.*) //' /proc/self/stat | cut -d' ' -f4)" ] && echo " own-session" && break
done`))
}

func TestRunnerStartJITRunnerDetachedWithSecretInEnvOnly(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	name := runnerapi.RunnerName("ci", 77, 1)
	started := time.Now()
	_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 77})
	require.NoError(t, err)
	assert.Less(t, time.Since(started), 30*time.Second, "the activity does not wait for the runner")

	config := strings.TrimSpace(r.waitFile(t, "/home/runner/jit"))
	assertRunnerIsolated(t, r)
	cfg, err := githubtest.DecodeJITConfig(config)
	require.NoError(t, err, "the runner got the encoded config GitHub issued")
	reg := jitRunner(t, r, name)
	assert.Equal(t, reg.ID, cfg.RunnerID)
	assert.Equal(t, []string{"self-hosted", "drydock"}, reg.Labels)
	assert.EqualValues(t, 1, reg.GroupID)
	assert.Equal(t, "offline", reg.Status, "registered; the stand-in never connects")
	assert.Equal(t, "", r.sh(t, `cat "$HOME/.drydock/runner-`+name+`.log"`), "the runner's output goes to its log")

	// The config is a credential: in no log line, and in no argv (only the
	// names of the environment variables are recorded).
	assert.NotContains(t, r.logs.String(), config)
	assert.Contains(t, r.logs.String(), "JIT runner started")
	argvs := r.argvs(t)
	assert.NotContains(t, argvs, config)
	assert.Contains(t, argvs, "ACTIONS_RUNNER_INPUT_JITCONFIG")
	// Nor in the runner's own argv (what ps shows on the machine).
	assert.NotContains(t, r.sh(t, `tr '\0' ' ' < "/proc/$(cat "/home/runner/runner.pid")/cmdline"`), config)

	// The stand-in runner connects and takes a job: the runner is online.
	r.srv.AddJob(ghOwner, ghRepo, githubtest.Job{ID: 77, Labels: []string{"drydock"}})
	claimRunner(t, cfg.URL+"/_test/runners/claim", config)

	// A retry of the same activity (the worker crashed after the runner
	// started) finds the name taken by a connected runner: done, nothing new.
	r.srv.ResetRequests()
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 77})
	require.NoError(t, err)
	assert.Equal(t, 1, r.srv.Count(githubtest.RouteGenerateRepoJITConfig))
	assert.Equal(t, 0, r.srv.Count(githubtest.RouteDeleteRepoRunner))
	assert.Len(t, r.srv.Runners(runnerScope), 1)
	assert.Contains(t, r.logs.String(), "a previous attempt started it")
}

// A retry whose earlier attempt started the runner, which has since run a
// job and deregistered (freeing its name), starts no second runner: the
// name is one job attempt's, and a second runner under it would take
// another job on a machine the pool believes free. (Found by make chaos: a
// 503 on the start command's output after the runner had started.)
func TestRunnerStartJITRunnerRetryAfterTheRunnerRanAndLeft(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	name := runnerapi.RunnerName("ci", 79, 1)
	_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 79})
	require.NoError(t, err)
	first := strings.TrimSpace(r.waitFile(t, "/home/runner/jit"))
	pid := r.sh(t, `cat "/home/runner/runner.pidns"`)

	// The runner ran its job and deregistered itself, as a JIT runner does.
	api, err := r.a.GitHub.API(0)
	require.NoError(t, err)
	require.NoError(t, api.RemoveRunner(context.Background(), runnerScope, jitRunner(t, r, name).ID))

	r.srv.ResetRequests()
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 79})
	require.NoError(t, err)
	assert.Equal(t, first, strings.TrimSpace(r.sh(t, `cat "/home/runner/jit"`)), "no second runner got a config")
	assert.Equal(t, pid, r.sh(t, `cat "/home/runner/runner.pidns"`), "no second runner process")
	assert.Empty(t, r.srv.Runners(runnerScope), "the registration the retry made was removed")
	assert.Equal(t, 1, r.srv.Count(githubtest.RouteDeleteRepoRunner))
	assert.Contains(t, r.logs.String(), "a previous attempt started it")
}

func TestRunnerStartJITRunnerReplacesStaleOfflineRegistration(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	name := runnerapi.RunnerName("ci", 78, 1)
	// A previous attempt registered the name, then died before its runner connected.
	api, err := r.a.GitHub.API(0)
	require.NoError(t, err)
	stale, staleID, err := api.GenerateJITConfig(context.Background(), runnerScope, name, []string{"drydock"}, 1)
	require.NoError(t, err)

	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 78})
	require.NoError(t, err)
	config := strings.TrimSpace(r.waitFile(t, "/home/runner/jit"))
	assert.NotEqual(t, stale, config)
	reg := jitRunner(t, r, name)
	assert.NotEqual(t, staleID, reg.ID, "registered afresh")
	cfg, err := githubtest.DecodeJITConfig(config)
	require.NoError(t, err)
	assert.Equal(t, reg.ID, cfg.RunnerID)
	assert.Len(t, r.srv.Runners(runnerScope), 1)
	assert.Equal(t, 1, r.srv.Count(githubtest.RouteDeleteRepoRunner))
	assert.NotContains(t, r.logs.String(), config)
	assert.NotContains(t, r.argvs(t), config)
}

// A runner_command written for the old contract (--jitconfig
// "$DRYDOCK_JIT_CONFIG") would start a runner with an empty config: it is
// refused, at worker start and by the activity, naming the replacement.
func TestRunnerCommandStillUsingDrydockJITConfigIsRefused(t *testing.T) {
	old := testPool()
	old.RunnerCommand = []string{"sh", "-c", `exec "$HOME/actions-runner/run.sh" --jitconfig "$DRYDOCK_JIT_CONFIG"`}
	err := activities.CheckRunnerCommand(&old)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pool ci: runner_command uses $DRYDOCK_JIT_CONFIG")
	assert.Contains(t, err.Error(), "ACTIONS_RUNNER_INPUT_JITCONFIG")
	require.Error(t, activities.CheckRunnerCommands(&pools.Config{Pools: []pools.Pool{testPool(), old}}))
	require.NoError(t, activities.CheckRunnerCommands(&pools.Config{Pools: []pools.Pool{testPool(), {Name: "default"}}}))

	r := newRunnerRig(t, false, func(p *pools.Pool) { p.RunnerCommand = old.RunnerCommand })
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-1-1"})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeInvalidArgument, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.Equal(t, 0, r.srv.Count(githubtest.RouteGenerateRepoJITConfig), "no runner registered")
}

func TestRunnerStartJITRunnerErrors(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	for _, tc := range []struct {
		in   activities.StartRunnerInput
		typ  string
		desc string
	}{
		{activities.StartRunnerInput{Pool: "nope", MachineID: r.machine, RunnerName: "drydock-x"}, activities.ErrTypeUnknownPool, "unknown pool"},
		{activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: "../etc"}, activities.ErrTypeInvalidArgument, "bad name"},
		{activities.StartRunnerInput{Pool: "ci", RunnerName: "drydock-x"}, activities.ErrTypeInvalidArgument, "no machine"},
	} {
		_, err := r.env.ExecuteActivity(r.a.StartJITRunner, tc.in)
		ae := appError(t, err)
		assert.Equal(t, tc.typ, ae.Type(), tc.desc)
		assert.True(t, ae.NonRetryable(), tc.desc)
	}
	// GitHub unavailable: retryable.
	r.srv.FailNext(githubtest.RouteGenerateRepoJITConfig, 1, githubtest.BadGateway())
	_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-1-1"})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeGitHubUnavailable, ae.Type())
	assert.False(t, ae.NonRetryable())
}

// Before a JIT runner starts, what the machine's last job left is wiped:
// every process of the runner user, every file of its home but the pool's
// declared caches (which keep their entries), its files in /tmp; the
// runner's program is a fresh copy of the install, which the runner user
// cannot change. A cache reached through a symbolic link a job planted is
// not followed: the file it points to stays where it is.
func TestRunnerStartWipesWhatTheLastJobLeftButTheCaches(t *testing.T) {
	r := newRunnerRig(t, false, func(p *pools.Pool) {
		// A cache inside another, declared first: both are kept whole.
		p.Caches = []string{"~/.cache/keep/sub", "~/.cache/keep", "~/.npm", "~/.evil/cache", "~/.missing"}
	})
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	r.sh(t, `set -e
mkdir -p /home/outside/cache && echo secret >/home/outside/cache/secret
HOME=/home/runner setpriv --reuid runner --regid runner --init-groups sh -c '
set -e
mkdir -p "$HOME/actions-runner/_work/repo/repo" "$HOME/.cargo/bin" "$HOME/tmp" "$HOME/.cache/keep/sub" "$HOME/.npm"
echo x >"$HOME/actions-runner/_work/repo/repo/planted"
echo x >"$HOME/.cargo/bin/cargo"
echo x >"$HOME/tmp/planted"
echo x >"$HOME/.cache/other"
echo entry >"$HOME/.cache/keep/sub/entry"
echo outer >"$HOME/.cache/keep/outer"
echo npm >"$HOME/.npm/index"
echo x >"$HOME/planted"
echo x >/tmp/planted-`+nonce+`
echo x >/var/tmp/planted-`+nonce+`
ln -s /home/outside "$HOME/.evil"
setsid sleep 600 </dev/null >/dev/null 2>&1 &'
for i in $(seq 100); do pgrep -u runner sleep >/dev/null && break; sleep 0.1; done`)
	leftover := strings.TrimSpace(r.sh(t, `pgrep -u runner -x sleep || true`))
	require.NotEmpty(t, leftover, "the last job's background process runs")
	name := runnerapi.RunnerName("ci", 80, 1)
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 80})
	require.NoError(t, err)
	r.waitFile(t, "/home/runner/runner.pidns")
	assert.Equal(t, `.cache/keep/outer
.cache/keep/sub/entry
.npm/index
actions-runner/installed
jit
runner.nnp
runner.pid
runner.pidns
runner.user
`, r.sh(t, `cd /home/runner && find . -type f -print | sed 's|^\./||' | sort`),
		"only the runner's program and the caches are left (and what the new runner wrote)")
	assert.Equal(t, "secret\n", r.sh(t, `cat /home/outside/cache/secret`), "a cache through a planted link is not followed")
	assert.Equal(t, "gone\n", r.sh(t, `[ -e /tmp/planted-`+nonce+` ] || echo gone`), "the runner user's files in /tmp are gone")
	assert.Equal(t, "gone\n", r.sh(t, `[ -e /var/tmp/planted-`+nonce+` ] || echo gone`), "and in /var/tmp (one find sweeps them all)")
	assert.Equal(t, "gone\n", r.sh(t, `s=$(cut -d' ' -f3 /proc/`+leftover+`/stat 2>/dev/null || true); if [ -z "$s" ] || [ "$s" = Z ]; then echo gone; fi`), "the last job's background process is gone")
	assert.Equal(t, "refused\n", r.sh(t, `HOME=/home/runner setpriv --reuid runner --regid runner --init-groups sh -c 'echo trojan >>/home/runner/actions-runner/installed' 2>/dev/null || echo refused`),
		"the runner user cannot change the runner's program")
	assert.Equal(t, "ok\n", r.sh(t, `cat "$HOME/actions-runner/installed"`), "the install is intact")
	assert.Equal(t, "runner 700\n", r.sh(t, `stat -c '%U %a' /home/runner`))
}

// A per-repo pool at organization scope registers each JIT runner at its
// job's repository (in the Default group, the only one a repository has),
// so GitHub hands it no other repository's job, and removes it there; a
// shared pool registers at the organization, in its runner group.
func TestRunnerPerRepoPoolRegistersRunnersAtTheJobsRepository(t *testing.T) {
	org := pools.Scope{Kind: pools.ScopeOrg, Org: ghOwner}
	for _, c := range []struct {
		isolation string
		where     pools.Scope
		group     int64
	}{
		{pools.IsolationPerRepo, runnerScope, pools.DefaultRunnerGroupID},
		{pools.IsolationShared, org, 7},
	} {
		t.Run(c.isolation, func(t *testing.T) {
			r := newRunnerRig(t, false, func(p *pools.Pool) {
				p.Scope, p.Isolation, p.RunnerGroupID = org, c.isolation, 7
			})
			name := runnerapi.RunnerName("ci", 81, 1)
			_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{
				Pool: "ci", MachineID: r.machine, RunnerName: name, JobID: 81, Repo: ghOwner + "/" + ghRepo,
			})
			require.NoError(t, err)
			regs := r.srv.Runners(c.where)
			require.Len(t, regs, 1, "registered at %+v", c.where)
			assert.Equal(t, name, regs[0].Name)
			assert.Equal(t, c.group, regs[0].GroupID)
			other := org
			if c.where == org {
				other = runnerScope
			}
			assert.Empty(t, r.srv.Runners(other), "and nowhere else")

			if c.isolation != pools.IsolationShared {
				// Never at the organization for want of a repository.
				_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{
					Pool: "ci", MachineID: r.machine, RunnerName: runnerapi.RunnerName("ci", 82, 1), JobID: 82,
				})
				assert.Equal(t, "InvalidArgument", appError(t, err).Type(), "%v", err)
				assert.Len(t, r.srv.Runners(org), 0)
			}
			v, err := r.env.ExecuteActivity(r.a.RemoveRunner, activities.RemoveRunnerInput{Pool: "ci", RunnerName: name, Repo: ghOwner + "/" + ghRepo})
			require.NoError(t, err)
			var res activities.RemoveRunnerResult
			require.NoError(t, v.Get(&res))
			assert.True(t, res.Removed, "removed where it registered")
			assert.Empty(t, r.srv.Runners(c.where))
		})
	}
}

// The pool may start the machine's next runner as soon as GitHub reports
// the last job complete, before the last runner's wrapper has run its
// cleanup: that late cleanup must not kill the new runner (found by the
// twenty-jobs e2e test: a new runner killed, its job not picked up).
func TestRunnerLateCleanupOfTheLastRunnerLeavesTheNextAlone(t *testing.T) {
	r := newRunnerRig(t, false, func(p *pools.Pool) {
		p.RunnerCommand = []string{"sh", "-c", `[ "$DRYDOCK_JOB_ID" = 90 ] && exit 0; exec sleep 60`}
	})
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	first := runnerapi.RunnerName("ci", 90, 1)
	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: first, JobID: 90})
	require.NoError(t, err)
	r.waitFile(t, "$HOME/.drydock/clean.done") // the first runner exited and its cleanup ran

	_, err = r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: runnerapi.RunnerName("ci", 91, 1), JobID: 91})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.TrimSpace(r.sh(t, `pgrep -u runner -x sleep || true`)) != "" }, 10*time.Second, 50*time.Millisecond,
		"the second runner runs")
	// The first runner's cleanup, late.
	assert.Contains(t, r.sh(t, `sh "$HOME/.drydock/after-runner.sh" `+first), "no cleanup")
	assert.NotEmpty(t, strings.TrimSpace(r.sh(t, `pgrep -u runner -x sleep || true`)), "the second runner still runs")
}
