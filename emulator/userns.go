package emulator

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// A machine's own users and homes. Every command of a machine runs in the
// machine's mount namespace, held by one process per machine (the
// namespace holder), where /etc is the machine's own and /home is the
// machine's own directory: useradd on one machine creates a user in that
// machine only, with its home under the machine's directory, and a process
// can run as it (setpriv, runuser), as on a real machine. The rest of the
// file system is the host's. It needs root (unshare, nsenter); without, a
// machine's commands share the host's /etc and /home.
//
// The machine's /etc is an overlay on the host's: what the machine changes
// is written to its own directory (the overlay's upper layer), the rest is
// read from the host's. A copy of the host's /etc (3 MB and about 1,200
// files here, per machine) ran the disk out of inodes and space at 7,745
// machines; where overlayfs cannot be mounted, each machine gets that copy.

// holderScript mounts the machine's /etc (an overlay when $2 is "overlay",
// else a bind of its copy) and binds its /home ($1: the machine's root
// directory), says ready, and keeps the namespace alive.
const holderScript = `set -e
if [ "$2" = overlay ]; then
  mount -t overlay drydock-etc -o "lowerdir=/etc,upperdir=$1/etc,workdir=$1/.etc-work" /etc
else
  mount --bind "$1/etc" /etc
fi
mount --bind "$1/home" /home
echo ready
exec sleep ` + holderSleep + `
`

// holderSleep is how long the holder sleeps (its argument): forever.
const holderSleep = "2147483647"

// prepareMachineFS gives a new machine its /etc (the upper layer of an
// overlay on the host's, or a copy of the host's) and /home. It reports
// whether the machine can have its own namespace, and whether its /etc is
// an overlay.
//
// The machines share the host's process table, so a user created on one
// machine gets user and group IDs of a range of its own (UID_MIN..UID_MAX
// and GID_MIN..GID_MAX in its login.defs, picked at random among 20,000
// ranges): `pkill -u runner` on one machine never reaches another machine's
// runner, as it cannot on real, separate machines.
func prepareMachineFS(root string) (overlay bool, err error) {
	if os.Geteuid() != 0 {
		return false, errors.New("not root")
	}
	if err := os.MkdirAll(filepath.Join(root, "home"), 0o755); err != nil {
		return false, err
	}
	etc := filepath.Join(root, "etc")
	defs := filepath.Join(etc, "login.defs")
	first := idRangeBase + rand.IntN(idRanges)*idRangeSize
	if etcOverlaySupported() && overlaySafe(root) {
		for _, d := range []string{etc, filepath.Join(root, ".etc-work")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return false, err
			}
		}
		return true, ownIDRangeFrom("/etc/login.defs", defs, first)
	}
	if out, err := exec.Command("cp", "-a", "/etc", etc).CombinedOutput(); err != nil {
		return false, fmt.Errorf("copying /etc: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return false, ownIDRangeFrom(defs, defs, first)
}

// overlaySafe reports whether root can be named in overlay mount options
// (which separate with commas and colons).
func overlaySafe(root string) bool { return !strings.ContainsAny(root, ",:\\") }

// etcOverlaySupported reports whether this host can mount an overlay on
// /etc in a mount namespace of its own, tried once.
var etcOverlaySupported = sync.OnceValue(func() bool {
	dir, err := os.MkdirTemp("", "drydock-overlay-probe-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"etc", ".etc-work"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return false
		}
	}
	probe := `mount -t overlay drydock-etc -o "lowerdir=/etc,upperdir=$1/etc,workdir=$1/.etc-work" /etc && touch /etc/.drydock-probe`
	err = exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", probe, "probe", dir).Run()
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, "etc", ".drydock-probe"))
	return err == nil
})

// The user and group ID ranges of machines: idRanges ranges of idRangeSize
// IDs from idRangeBase (all below 2^31, so no tool misreads them).
const (
	idRangeBase = 100_000
	idRangeSize = 1_000
	idRanges    = 20_000
)

// ownIDRangeFrom writes to path the login.defs at from with the ID range of
// new users and groups set to first..first+idRangeSize-1.
func ownIDRangeFrom(from, path string, first int) error {
	b, err := os.ReadFile(from)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	set := map[string]int{"UID_MIN": first, "UID_MAX": first + idRangeSize - 1, "GID_MIN": first, "GID_MAX": first + idRangeSize - 1}
	var out []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			if _, ok := set[f[0]]; ok {
				continue
			}
		}
		out = append(out, line)
	}
	for _, k := range []string{"UID_MIN", "UID_MAX", "GID_MIN", "GID_MAX"} {
		out = append(out, fmt.Sprintf("%s\t%d", k, set[k]))
	}
	return os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644)
}

// namespace returns the pid of m's namespace holder, starting it if it is
// not running. Call with s.mu held.
func (s *Server) namespace(m *machine) (int, error) {
	if !m.ownFS {
		return 0, nil
	}
	if !s.holderGone(m) {
		return m.nsPid, nil
	}
	out, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer out.Close()
	mode := "bind"
	if m.etcOverlay {
		mode = "overlay"
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", holderScript, "holder", m.root, mode)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), EnvMachineID + "=" + m.id}
	cmd.Stdout = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("starting the machine's namespace: %w", err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, errors.New("the machine's namespace did not start (unshare --mount, mount --bind)")
	}
	m.nsPid = cmd.Process.Pid
	m.pgids[m.nsPid] = true
	// The holder lives as long as the machine. Waiting for it would hold a
	// pidfd and an OS thread blocked in waitid per machine, which thousands
	// of machines run out of (the file descriptor limit, Go's 10,000
	// threads); it is reaped once killed instead (reapHolders). Until then
	// its pid stays taken, dead or alive, so no other process gets it.
	_ = cmd.Process.Release()
	return m.nsPid, nil
}

// holderGone reports whether m's namespace holder is dead, reaping it if it
// died on its own. Call with s.mu held.
func (s *Server) holderGone(m *machine) bool {
	if m.nsPid <= 0 {
		return true
	}
	if st, ok := readStat(m.nsPid); ok && st.state != 'Z' && st.state != 'X' {
		return false
	}
	s.unreaped[m.nsPid] = true
	s.reapHolders()
	m.nsPid = 0
	return true
}

// releaseHolder reaps m's namespace holder once its processes have been
// killed (or leaves it to the lifecycle loop if it has not exited yet).
// Call with s.mu held.
func (s *Server) releaseHolder(m *machine) {
	if m.nsPid > 0 {
		s.unreaped[m.nsPid] = true
		m.nsPid = 0
	}
	s.reapHolders()
}

// reapHolders reaps the namespace holders in s.unreaped that have exited
// (they are this process's children: their pid is not reused before), and
// keeps the others for the next call. Call with s.mu held.
func (s *Server) reapHolders() {
	for pid := range s.unreaped {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if got == pid || errors.Is(err, syscall.ECHILD) {
			delete(s.unreaped, pid)
		}
	}
}

// inNamespace wraps argv (path resolved) to run in the namespace of holder
// pid, in directory dir.
func inNamespace(pid int, dir, path string, argv []string) (string, []string, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return "", nil, err
	}
	args := []string{"nsenter", "--mount=/proc/" + strconv.Itoa(pid) + "/ns/mnt", "--wd=" + dir, "--", path}
	return nsenter, append(args, argv[1:]...), nil
}
