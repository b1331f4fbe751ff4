package emulator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

// A machine's /etc costs the disk what the machine changed in it, not a
// copy of the host's (3 MB and about 1,200 files each: 7,745 machines ran
// the disk out of inodes). The machine still reads the host's files, writes
// its own, and has its own ID range in login.defs.
func TestMachineEtcStoresOnlyItsChanges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the emulator's machines have their own /etc only when it runs as root (as on these machines)")
	}
	t.Parallel()
	e := start(t)
	require.True(t, e.s.etcOverlayOK(), "overlayfs in a mount namespace, its layers in the data directory (these machines have it)")
	m := e.running(nil)
	hostRelease, err := os.ReadFile("/etc/os-release")
	require.NoError(t, err)

	x, out := e.run(m.MachineID, map[string]any{"command": []string{"sh", "-c", `set -e
cat /etc/os-release
echo machine-only >/etc/drydock-emu-probe
grep '^UID_MIN' /etc/login.defs`}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
	require.True(t, strings.HasPrefix(out.Stdout, string(hostRelease)), "the machine reads the host's files")
	assert.NotContains(t, readOrEmpty("/etc/login.defs"), strings.TrimSpace(out.Stdout[len(hostRelease):]), "its login.defs has a range of its own")
	assert.NoFileExists(t, "/etc/drydock-emu-probe", "what the machine writes stays on the machine")

	etc := filepath.Join(e.s.DataDir(), "machines", m.MachineID, "root", "etc")
	assert.FileExists(t, filepath.Join(etc, "drydock-emu-probe"))
	assert.Less(t, countEntries(t, etc), 20, "entries stored for the machine's /etc")
}

func readOrEmpty(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
