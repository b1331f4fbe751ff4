package emulator

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

// A machine has users of its own: a user added on one machine exists there
// only (not on another machine, not on the host), has its home under the
// machine's directory, and runs processes under its own uid.
func TestMachineHasItsOwnUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the emulator's machines have their own users only when it runs as root (as on these machines)")
	}
	t.Parallel()
	e := start(t)
	a, b := e.running(nil), e.running(nil)
	const user = "drydock-emu-user"
	x, out := e.run(a.MachineID, map[string]any{"command": []string{"sh", "-c", `set -e
useradd --create-home --home-dir /home/` + user + ` --shell /bin/sh ` + user + `
echo probe >/home/` + user + `/probe
chown ` + user + ` /home/` + user + `/probe
setpriv --reuid ` + user + ` --regid ` + user + ` --init-groups sh -c 'id -un; cat "/home/` + user + `/probe"; touch /etc/forbidden 2>/dev/null || echo no-root'`}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, "%s %s", out.Stdout, out.Stderr)
	assert.Equal(t, user+"\nprobe\nno-root\n", out.Stdout)
	assert.FileExists(t, filepath.Join(e.s.DataDir(), "machines", a.MachineID, "root", "home", user, "probe"), "the home is the machine's")

	x, out = e.run(b.MachineID, map[string]any{"command": []string{"sh", "-c", `id ` + user + ` || echo absent; ls /home`}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status)
	assert.Contains(t, out.Stdout, "absent", "another machine has no such user")
	assert.NotContains(t, out.Stdout, user)
	assert.Error(t, exec.Command("id", user).Run(), "the host has no such user")
	_, err := os.Stat("/home/" + user)
	assert.True(t, os.IsNotExist(err), "the host has no such home")

	// The user survives sleep and wake.
	e.do("POST", "/v1/machines/"+a.MachineID+"/sleep", nil)
	e.waitPhase(a.MachineID, dedalus.PhaseSleeping)
	x, out = e.run(a.MachineID, map[string]any{"command": []string{"id", "-un", user}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
	assert.Equal(t, user+"\n", out.Stdout)

	// The same user on another machine is another user: killing every
	// process of the user on one machine leaves the other machine's alone.
	x, out = e.run(b.MachineID, map[string]any{"command": []string{"sh", "-c", `set -e
useradd --no-log-init --create-home --home-dir /home/` + user + ` --shell /bin/sh ` + user + `
setsid setpriv --reuid ` + user + ` --regid ` + user + ` --init-groups sleep 600 </dev/null >/dev/null 2>&1 &
for i in $(seq 100); do pgrep -u ` + user + ` sleep >/dev/null && break; sleep 0.1; done
id -u ` + user}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
	uidB := strings.TrimSpace(out.Stdout)
	x, out = e.run(a.MachineID, map[string]any{"command": []string{"sh", "-c", `id -u ` + user + `; pkill -KILL -u ` + user + ` || true`}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status, out.Stderr)
	assert.NotEqual(t, uidB, strings.TrimSpace(out.Stdout), "the user has other IDs on another machine")
	x, out = e.run(b.MachineID, map[string]any{"command": []string{"pgrep", "-u", user, "sleep"}})
	assert.Equal(t, dedalus.ExecSucceeded, x.Status, "machine b's process of the user still runs: %s", out.Stderr)
}
