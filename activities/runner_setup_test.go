package activities_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

func TestRunnerSetupMachineRunsOnceThenSkips(t *testing.T) {
	r := newRunnerRig(t, true, nil) // setup needs no GitHub
	in := activities.SetupMachineInput{Pool: "ci", MachineID: r.machine}
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, in)
	require.NoError(t, err)
	assert.Equal(t, "setup ci 2.321.0\nsecond\n", r.sh(t, `cat "$HOME/setup.log"`))
	assert.Equal(t, "ok\n", r.sh(t, `cat "$HOME/actions-runner/installed"`))
	assert.NotEmpty(t, r.sh(t, `cat "$HOME/.drydock/runner-2.321.0.installed"`))

	// A second call finds the marker: nothing runs again.
	_, err = r.env.ExecuteActivity(r.a.SetupMachine, in)
	require.NoError(t, err)
	assert.Equal(t, "setup ci 2.321.0\nsecond\n", r.sh(t, `cat "$HOME/setup.log"`))
	assert.Contains(t, r.logs.String(), "runner machine already set up")

	_, err = r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "nope", MachineID: r.machine})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeUnknownPool, ae.Type())
	assert.True(t, ae.NonRetryable())
}

// A machine is set up with the configuration it was created with (its size
// came from it), even when the worker's RUNNER_POOLS has changed since.
func TestRunnerSetupFollowsTheConfigurationTheMachineWasCreatedWith(t *testing.T) {
	r := newRunnerRig(t, true, nil) // the worker's configuration: testPool's setup
	created := testPool()
	created.Setup = []previewspec.Step{{Name: "as created", Run: `echo "created with v1" >> "$HOME/setup.log"`}}
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine, Config: &created})
	require.NoError(t, err)
	assert.Equal(t, "created with v1\n", r.sh(t, `cat "$HOME/setup.log"`), "the steps of the configuration the machine was created with, only")

	other := testPool()
	other.Name = "other"
	_, err = r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine, Config: &other})
	ae := appError(t, err)
	assert.True(t, ae.NonRetryable(), "another pool's configuration is refused")
}

func TestRunnerSetupMachineFailingStep(t *testing.T) {
	r := newRunnerRig(t, true, func(p *pools.Pool) {
		p.Setup = []previewspec.Step{{Name: "toolchain", Run: `echo fetching; echo "E: no such package" >&2; exit 3`}}
	})
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeCommandFailed, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.Contains(t, ae.Error(), "setup: toolchain")
	var res activities.CommandResult
	require.NoError(t, ae.Details(&res))
	assert.EqualValues(t, 3, res.ExitCode)
	assert.Equal(t, "E: no such package\n", res.StderrTail)
	assert.Equal(t, "", r.sh(t, `ls "$HOME/.drydock" 2>/dev/null || true`), "no marker after a failure")
}

// The default install downloads actions/runner with curl; a curl on PATH
// that serves a stand-in tarball shows what it asks for and that the
// archive is unpacked into $HOME/actions-runner.
func TestRunnerSetupMachineDefaultInstall(t *testing.T) {
	dir := t.TempDir()
	tarball := filepath.Join(dir, "runner.tar.gz")
	writeTarball(t, tarball, map[string]string{"run.sh": "#!/bin/sh\necho run\n", "bin/Runner.Listener": "x"})
	curlLog := filepath.Join(dir, "curl.log")
	stub := fmt.Sprintf(`#!/bin/sh
out=""; url=""
while [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift 2 ;; -*) shift ;; *) url="$1"; shift ;; esac; done
echo "$url" >> %q
cp %q "$out"
`, curlLog, tarball)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "curl"), []byte(stub), 0o755))
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH")) // executions inherit the emulator's PATH

	r := newRunnerRig(t, true, func(p *pools.Pool) { p.Setup, p.Install, p.RunnerVersion = nil, nil, "" })
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	arch := map[string]string{"arm64": "arm64"}[runtime.GOARCH]
	if arch == "" {
		arch = "x64"
	}
	v := pools.DefaultRunnerVersion
	b, err := os.ReadFile(curlLog)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("https://github.com/actions/runner/releases/download/v%s/actions-runner-linux-%s-%s.tar.gz\n", v, arch, v), string(b))
	assert.Equal(t, "run.sh\n", r.sh(t, `cd "$HOME/actions-runner" && ls *.sh && ls *.part 2>/dev/null || true`), "unpacked, download removed")
	assert.NotEmpty(t, r.sh(t, `cat "$HOME/.drydock/runner-`+v+`.installed"`))

	// Installed: a second call downloads nothing.
	_, err = r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	b, err = os.ReadFile(curlLog)
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(b), "\n"))
}

func writeTarball(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "./" + name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(content))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

// registeredPersistent is a runner rig of a persistent organization pool
// whose install step runs install, with its machine set up and its runner
// drydock-ci-m1 registered once.
func registeredPersistent(t *testing.T, install string) (*runnerRig, activities.RegisterInput) {
	t.Helper()
	r := newRunnerRig(t, false, func(p *pools.Pool) {
		p.Mode = pools.ModePersistent
		p.Scope = pools.Scope{Kind: pools.ScopeOrg, Org: ghOwner}
		p.Install = &previewspec.Step{Run: install}
	})
	_, err := r.env.ExecuteActivity(r.a.SetupMachine, activities.SetupMachineInput{Pool: "ci", MachineID: r.machine})
	require.NoError(t, err)
	in := activities.RegisterInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-m1"}
	_, err = r.env.ExecuteActivity(r.a.RegisterPersistent, in)
	require.NoError(t, err)
	return r, in
}

// Persistent mode: the install step provides stand-ins for config.sh and
// svc.sh that record how they were called.
func TestRunnerRegisterPersistent(t *testing.T) {
	r, in := registeredPersistent(t, `set -e
d="$HOME/actions-runner"; mkdir -p "$d"
cat > "$d/config.sh" <<'EOF'
#!/bin/sh
echo "$@" > "$HOME/config.args"
id -un > "$HOME/config.user"
echo "$ACTIONS_RUNNER_INPUT_TOKEN" > "$HOME/config.token"
touch .runner
EOF
cat > "$d/svc.sh" <<'EOF'
#!/bin/sh
echo "$@" >> "$HOME/svc.calls"
env >> "$HOME/svc.env"
[ "$1" = install ] && echo actions.runner.test.service > .service
exit 0
EOF
chmod +x "$d/config.sh" "$d/svc.sh"`)

	tokens := r.srv.RegistrationTokens()
	require.Len(t, tokens, 1)
	assert.Equal(t, 1, r.srv.Count(githubtest.RouteCreateOrgRegistrationToken))
	// The token is config.sh's environment input, not an argument; the
	// service (svc.sh and what it starts) does not get it.
	want := fmt.Sprintf("--unattended --url %s/%s --name drydock-ci-m1 --labels self-hosted,drydock --work _work --replace\n",
		strings.TrimSuffix(r.srv.URL(), "/"), ghOwner)
	assert.Equal(t, want, r.sh(t, `cat /home/runner/config.args`))
	assert.Equal(t, tokens[0]+"\n", r.sh(t, `cat /home/runner/config.token`))
	assert.NotContains(t, r.sh(t, `cat "$HOME/svc.env"`), tokens[0])
	assert.Equal(t, activities.RunnerUser+"\n", r.sh(t, `cat /home/runner/config.user`), "config.sh runs as the runner user, not root")
	assert.Equal(t, "install runner\nstart\n", r.sh(t, `cat "$HOME/svc.calls"`), "the service is the runner user's")
	assert.Equal(t, "ACTIONS_RUNNER_HOOK_JOB_COMPLETED=/etc/drydock/job-completed.sh\n", r.sh(t, `grep ^ACTIONS_RUNNER_HOOK /home/runner/actions-runner/.env`),
		"the runner cleans up after every job")
	assert.Equal(t, "root 755\nroot 755\n", r.sh(t, `stat -c '%U %a' /etc/drydock/job-completed.sh /etc/drydock/clean-between-jobs.sh`),
		"the cleanup is root's: a job cannot change it")
	assert.NotContains(t, r.logs.String(), tokens[0])
	assert.NotContains(t, r.argvs(t), tokens[0])

	// Again (a retry whose answer was lost): the service started, and the
	// runner may have run jobs since, which can change every file of its
	// directory: nothing there is run as root again.
	r.sh(t, `printf '#!/bin/sh\necho trojan >>"$HOME/svc.calls"\n' >/home/runner/actions-runner/svc.sh`)
	_, err := r.env.ExecuteActivity(r.a.RegisterPersistent, in)
	require.NoError(t, err)
	assert.Equal(t, want, r.sh(t, `cat /home/runner/config.args`))
	assert.Equal(t, "install runner\nstart\n", r.sh(t, `cat "$HOME/svc.calls"`), "the runner's svc.sh is not run again")
}

// A service whose start leaves a process running (a runner started without
// systemd) must not keep the registration lock: a retried registration
// would wait on it until it timed out (found by make chaos).
func TestRunnerRegisterPersistentRetryIsNotBlockedByTheRunningService(t *testing.T) {
	r, in := registeredPersistent(t, `set -e
d="$HOME/actions-runner"; mkdir -p "$d"
printf '#!/bin/sh\ntouch .runner\n' > "$d/config.sh"
printf '#!/bin/sh\n[ "$1" = install ] && touch .service\n[ "$1" = start ] && { sleep 600 >/dev/null 2>&1 </dev/null & }\nexit 0\n' > "$d/svc.sh"
chmod +x "$d/config.sh" "$d/svc.sh"`)
	done := make(chan error, 1)
	go func() {
		_, err := r.env.ExecuteActivity(r.a.RegisterPersistent, in)
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the retried registration waits on the lock the running service kept")
	}
}
