package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

// isolationJobScript is the steps of the two jobs of
// TestRunnerCleanBetweenJobsKeepsDeclaredCaches. The first leaves a
// background process (in a session of its own, with a recognisable name), a
// file in its workspace, a trojan cargo in a PATH directory of the home that
// is not a declared cache, a file in its temporary directory, and an entry
// in the declared cache; the second checks each and writes what it found.
const isolationJobScript = `set -u
report=@REPORT@
# The leftover's name is never written out whole, so that no command line
# holding this script matches it.
leftover=leftover-
leftover=${leftover}@NONCE@
tmpd="${TMPDIR:-/tmp}" # a persistent runner's service sets no TMPDIR
case "$FAKERUNNER_JOB_ID" in
@FIRST@)
  cp "$(command -v sleep)" "$RUNNER_TEMP/$leftover"
  setsid "$RUNNER_TEMP/$leftover" 600 </dev/null >/dev/null 2>&1 &
  echo planted >"$GITHUB_WORKSPACE/planted"
  mkdir -p "$HOME/.cargo/bin" "$HOME/.cache/drydock-test"
  printf '#!/bin/sh\necho trojan\n' >"$HOME/.cargo/bin/cargo"
  chmod +x "$HOME/.cargo/bin/cargo"
  echo planted >"$tmpd/planted-tmpdir-@NONCE@"
  echo planted >/tmp/planted-@NONCE@
  echo "$FAKERUNNER_JOB_ID" >"$HOME/.cache/drydock-test/entry"
  echo planted >"$report/first"
  ;;
*)
  fail=0
  export leftover tmpd
  check() { if sh -c "$1" >/dev/null 2>&1; then echo "ok: $2"; else echo "FAIL: $2"; fail=1; fi >>"$report/second"; }
  check 'for f in /proc/[0-9]*/cmdline; do case "$(tr "\0" " " <"$f")" in *"$leftover"*) exit 1 ;; esac; done' "no leftover process in sight"
  check '[ ! -e "$GITHUB_WORKSPACE/planted" ]' "work directory clean"
  check '[ "$(PATH="$HOME/.cargo/bin:$PATH" command -v cargo)" != "$HOME/.cargo/bin/cargo" ]' "no planted cargo on PATH"
  check '[ ! -e "$HOME/.cargo" ]' "nothing outside the caches in the home"
  check '[ ! -e "$tmpd/planted-tmpdir-@NONCE@" ]' "temporary directory clean"
  check '[ ! -e /tmp/planted-@NONCE@ ]' "nothing of the first job in /tmp"
  check '[ "$(id -un)" = runner ] && [ "$(id -u)" != 0 ]' "the job runs as the unprivileged runner user"
  check '! touch /etc/drydock-planted' "the job cannot write the system"
  check '[ "$(cat "$HOME/.cache/drydock-test/entry")" = @FIRST@ ]' "cache entry of the first job kept"
  exit $fail
  ;;
esac
`

// After a job, a machine keeps nothing of it but its declared caches: job 1
// leaves a background process, a file in its work directory, one in /tmp
// and an executable in a PATH directory of the home outside the caches;
// job 2 on the same machine finds none of them, and finds job 1's cache
// entry. Both run as the unprivileged runner user.
func TestRunnerCleanBetweenJobsKeepsDeclaredCaches(t *testing.T) {
	testCleanBetweenJobs(t, func(s *stack, script string) string {
		return withCaches(t, poolJSON(t, s, "clean", 1, "", ""), func(p map[string]any) {
			p["runner_command"] = append(p["runner_command"].([]any), "-job-command", script)
		})
	})
}

// The same between the jobs of a persistent runner: its job-completed hook
// cleans up after each job (the runner itself keeps running).
func TestRunnerPersistentCleanBetweenJobsKeepsDeclaredCaches(t *testing.T) {
	testCleanBetweenJobs(t, func(s *stack, script string) string {
		return withCaches(t, persistentPoolJSON(t, s, "clean", 1, "-job-command", script), nil)
	})
}

// withCaches gives the one pool of a RUNNER_POOLS the test's caches, and
// then applies mod to it.
func withCaches(t *testing.T, pools string, mod func(map[string]any)) string {
	t.Helper()
	var cfg struct {
		Pools []map[string]any `json:"pools"`
	}
	require.NoError(t, json.Unmarshal([]byte(pools), &cfg))
	p := cfg.Pools[0]
	p["caches"] = []string{"~/.cache/drydock-test", "~/.npm"}
	if mod != nil {
		mod(p)
	}
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	return string(b)
}

// testCleanBetweenJobs runs the two jobs of isolationJobScript on the one
// machine of the pool that pool returns (given the script).
func testCleanBetweenJobs(t *testing.T, pool func(s *stack, script string) string) {
	ids := nextJobIDs(2)
	first, second := ids[0], ids[1]
	report := jobWritableDir(t)
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	script := strings.NewReplacer("@REPORT@", report, "@FIRST@", strconv.FormatInt(first, 10), "@NONCE@", nonce).Replace(isolationJobScript)
	s := newStackWith(t, func(s *stack) string { return pool(s, script) })

	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(s.emu.DataDir(), "machines", "*", "root", "root", ".drydock", "runner-*.log"))
			more, _ := filepath.Glob(filepath.Join(s.emu.DataDir(), "machines", "*", "root", "home", "runner", "actions-runner", "runner.log"))
			logs = append(logs, more...)
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, b)
			}
		}
	})
	s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: first, Labels: jobLabels, Duration: 3 * time.Second})
	require.Equal(t, http.StatusAccepted, s.queueJob(t, first, "clean-1"))
	require.Eventually(t, func() bool { return len(leftovers(nonce)) > 0 }, 60*time.Second, 50*time.Millisecond,
		"job 1's background process runs")
	s.waitJobs(t, []int64{first})
	b, err := os.ReadFile(filepath.Join(report, "first"))
	require.NoError(t, err, "job 1 planted its files")
	require.Equal(t, "planted\n", string(b))
	require.Eventually(t, func() bool { return len(leftovers(nonce)) == 0 }, 10*time.Second, 50*time.Millisecond,
		"job 1's background process is gone once its runner exits (left: %v)", leftovers(nonce))

	s.gh.AddJob(jobOwner, jobRepo, githubtest.Job{ID: second, Labels: jobLabels, Duration: 200 * time.Millisecond})
	require.Equal(t, http.StatusAccepted, s.queueJob(t, second, "clean-2"))
	s.waitJobs(t, []int64{second})
	got, err := os.ReadFile(filepath.Join(report, "second"))
	require.NoError(t, err, "job 2 ran its checks")
	assert.Equal(t, `ok: no leftover process in sight
ok: work directory clean
ok: no planted cargo on PATH
ok: nothing outside the caches in the home
ok: temporary directory clean
ok: nothing of the first job in /tmp
ok: the job runs as the unprivileged runner user
ok: the job cannot write the system
ok: cache entry of the first job kept
`, string(got))
	for _, id := range ids {
		j, ok := s.gh.Job(id)
		require.True(t, ok)
		assert.Equal(t, "success", j.Conclusion, "job %d", id)
	}
	assert.EqualValues(t, 1, s.emu.Stats().Creates, "both jobs ran on the one machine")
	inv := s.inventory(t, "clean")
	require.Len(t, inv.Machines, 1)
	assert.Equal(t, 2, inv.Machines[0].Jobs, "the machine ran both jobs")
}

// leftovers lists the host's processes whose command line names the
// leftover program of job 1.
func leftovers(nonce string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		argv0, _, _ := bytes.Cut(b, []byte{0})
		if err == nil && filepath.Base(string(argv0)) == "leftover-"+nonce {
			stat, _ := os.ReadFile(filepath.Join(d, "stat"))
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
				continue
			}
			out = append(out, fmt.Sprintf("%s %q", filepath.Base(d), bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		}
	}
	return out
}
