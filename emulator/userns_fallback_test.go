package emulator

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

// A machine whose overlay /etc cannot be mounted (its file system refuses
// to be an upper layer although the probe passed) still runs commands: it
// falls back to a copy of the host's /etc, keeping its own ID range, and
// the machines created after it get the copy from the start.
func TestMachineFallsBackToACopyWhenItsOverlayFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("machines have their own /etc only when the emulator runs as root (as on these machines)")
	}
	t.Parallel()
	e := start(t)
	require.True(t, e.s.etcOverlayOK(), "overlayfs works here: the test breaks one machine's")
	m := e.running(nil)
	root := filepath.Join(e.s.DataDir(), "machines", m.MachineID, "root")
	defs, err := os.ReadFile(filepath.Join(root, "etc", "login.defs"))
	require.NoError(t, err)
	// Without its work directory the overlay cannot be mounted.
	require.NoError(t, os.RemoveAll(filepath.Join(root, ".etc-work")))

	x, out := e.run(m.MachineID, map[string]any{"command": []string{"sh", "-c", "cat /etc/login.defs; cat /etc/os-release"}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
	assert.Equal(t, string(defs), out.Stdout[:len(defs)], "the machine keeps its login.defs (its ID range)")
	host, err := os.ReadFile("/etc/os-release")
	require.NoError(t, err)
	assert.Equal(t, string(host), out.Stdout[len(defs):], "it reads the host's files from the copy")
	assert.Greater(t, countEntries(t, filepath.Join(root, "etc")), 100, "the machine's /etc is a copy")

	assert.False(t, e.s.etcOverlayOK(), "the next machines get a copy from the start")
	m2 := e.running(nil)
	x, out = e.run(m2.MachineID, map[string]any{"command": []string{"true"}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
	assert.NoDirExists(t, filepath.Join(e.s.DataDir(), "machines", m2.MachineID, "root", ".etc-work"), "no overlay tried")
}

// A namespace holder that dies on its own is replaced at the next command,
// the dead one is reaped, and its pid stops counting as one of the
// machine's process groups at once (a pid reused by another machine's
// process group must never be frozen or killed with this machine).
func TestADeadNamespaceHolderIsReplacedAndForgotten(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("machines have a namespace holder only when the emulator runs as root (as on these machines)")
	}
	t.Parallel()
	e := start(t)
	m := e.running(nil)
	x, out := e.run(m.MachineID, map[string]any{"command": []string{"true"}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
	old := holderPids(t, e.s, []string{m.MachineID})
	require.Len(t, old, 1)
	require.NoError(t, syscall.Kill(old[0], syscall.SIGKILL))
	eventually(t, 5*time.Second, "the killed holder has exited", func() bool {
		st, ok := readStat(old[0])
		return !ok || st.state == 'Z'
	})

	x, out = e.run(m.MachineID, map[string]any{"command": []string{"cat", "/etc/login.defs"}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
	assert.Contains(t, out.Stdout, "UID_MIN", "the new holder mounted the machine's /etc")
	now := holderPids(t, e.s, []string{m.MachineID})
	require.Len(t, now, 1)
	assert.NotEqual(t, old[0], now[0], "a new holder")
	assert.Empty(t, remaining(old), "the dead holder is reaped, not left a zombie")
	e.s.mu.Lock()
	stale := e.s.machines[m.MachineID].pgids[old[0]]
	e.s.mu.Unlock()
	assert.False(t, stale, "the dead holder's pid is no longer one of the machine's process groups")
}

func countEntries(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(_ string, _ fs.DirEntry, err error) error {
		n++
		return err
	}))
	return n
}

// Mountinfo's mount points below /etc, unescaped, each once; /etc itself
// and paths that only start with "/etc" are not below it.
func TestEtcMountPoints(t *testing.T) {
	info := strings.Join([]string{
		`22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw`,
		`23 22 254:1 /docker/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw`,
		`24 22 254:1 /docker/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw`,
		`25 22 0:5 / /etc rw - tmpfs tmpfs rw`,
		`26 22 0:6 / /etcetera rw - tmpfs tmpfs rw`,
		`27 22 254:1 /a /etc/with\040space rw - ext4 /dev/vda rw`,
		`28 22 254:1 /b /etc/hosts rw - ext4 /dev/vda rw`,
		``,
	}, "\n")
	assert.Equal(t, []string{"/etc/resolv.conf", "/etc/hosts", "/etc/with space"}, etcMountPoints(info))
}
