package emulator

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

// envPrivateMounts marks the test binary re-run in a mount namespace of its
// own (by TestMachineSeesWhatIsMountedOnTheHostsEtc).
const envPrivateMounts = "DRYDOCK_EMULATOR_TEST_PRIVATE_MOUNTS"

// In a container the host's /etc/resolv.conf, hosts and hostname are files
// mounted on top of /etc, which an overlay of /etc does not show: a
// machine must still see them, with /etc's own mode whatever the
// emulator's umask. The test re-runs itself in a mount namespace of its
// own (so the host's mounts are untouched), mounts a file of its own on a
// file of /etc there, sets umask 077 and runs a machine.
func TestMachineSeesWhatIsMountedOnTheHostsEtc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("machines have their own /etc only when the emulator runs as root (as on these machines)")
	}
	if os.Getenv(envPrivateMounts) == "" {
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--",
			os.Args[0], "-test.run=^TestMachineSeesWhatIsMountedOnTheHostsEtc$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), envPrivateMounts+"=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "the test in its own mount namespace:\n%s", out)
		require.Contains(t, string(out), "--- PASS: TestMachineSeesWhatIsMountedOnTheHostsEtc", "it ran:\n%s", out)
		return
	}
	target := mountableEtcFile(t)
	mine := filepath.Join(t.TempDir(), "mounted")
	want := "mounted on the host's /etc by the test " + strconv.Itoa(os.Getpid()) + "\n"
	require.NoError(t, os.WriteFile(mine, []byte(want), 0o644))
	require.NoError(t, syscall.Mount(mine, target, "", syscall.MS_BIND, ""), "bind %s on %s", mine, target)
	syscall.Umask(0o077)

	e := start(t)
	require.True(t, e.s.etcOverlayOK(), "the machines' /etc is an overlay here")
	m := e.running(nil)
	etcMode, err := os.Stat("/etc")
	require.NoError(t, err)
	x, out := e.run(m.MachineID, map[string]any{"command": []string{"sh", "-c",
		"cat " + target + "; stat -c %a /etc /etc/login.defs"}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
	assert.Equal(t, want+strconv.FormatUint(uint64(etcMode.Mode().Perm()), 8)+"\n644\n", out.Stdout,
		"the machine sees the mounted file, /etc's mode and a login.defs anyone can read")
}

// mountableEtcFile is a regular file of the host's /etc (not a symlink) to
// mount another on.
func mountableEtcFile(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"hostname", "hosts", "debian_version", "issue", "passwd"} {
		p := "/etc/" + name
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	t.Fatal("no regular file in /etc to mount on")
	return ""
}
