package emulator

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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
  ` + mountEtcOverlay + `
else
  mount --bind "$1/etc" /etc
fi
mount --bind "$1/home" /home
echo ready
exec sleep ` + holderSleep + `
`

// mountEtcOverlay mounts on /etc an overlay of the host's with its upper and
// work directories under $1 (the holder's and the probe's).
const mountEtcOverlay = `mount -t overlay drydock-etc -o "lowerdir=/etc,upperdir=$1/etc,workdir=$1/.etc-work" /etc`

// holderSleep is how long the holder sleeps (its argument): forever.
const holderSleep = "2147483647"

// prepareMachineFS gives a new machine its /etc (the upper layer of an
// overlay on the host's when overlay is true, else a copy of the host's)
// and /home. It reports whether the machine can have its own namespace, and
// whether its /etc is an overlay.
//
// The machines share the host's process table, so a user created on one
// machine gets user and group IDs of a range of its own (UID_MIN..UID_MAX
// and GID_MIN..GID_MAX in its login.defs, picked at random among 20,000
// ranges): `pkill -u runner` on one machine never reaches another machine's
// runner, as it cannot on real, separate machines.
func prepareMachineFS(root string, overlay bool) (bool, error) {
	if os.Geteuid() != 0 {
		return false, errors.New("not root")
	}
	if err := os.MkdirAll(filepath.Join(root, "home"), 0o755); err != nil {
		return false, err
	}
	etc := filepath.Join(root, "etc")
	defs := filepath.Join(etc, "login.defs")
	first := idRangeBase + rand.IntN(idRanges)*idRangeSize
	if overlay && overlaySafe(root) {
		if err := overlayUpper(root); err != nil {
			return false, err
		}
		return true, ownIDRangeFrom("/etc/login.defs", defs, first)
	}
	if err := copyHostEtc(etc); err != nil {
		return false, err
	}
	return false, ownIDRangeFrom(defs, defs, first)
}

// overlayUpper makes the upper and work directories of the overlay on /etc
// under root. The upper directory is the root of the machine's /etc, so it
// takes the host /etc's mode and owner (not the umask's). Files mounted on
// top of the host's /etc (a container's resolv.conf, hosts and hostname are
// bind mounts) are not seen through an overlay of /etc: the upper layer
// gets a copy of each, as a copy of the whole /etc would have had.
func overlayUpper(root string) error {
	etc := filepath.Join(root, "etc")
	for _, d := range []string{etc, filepath.Join(root, ".etc-work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := sameModeAndOwner("/etc", etc); err != nil {
		return err
	}
	for _, mp := range hostEtcMounts() {
		dst := filepath.Join(etc, strings.TrimPrefix(mp, "/etc/"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if out, err := exec.Command("cp", "-a", mp, dst).CombinedOutput(); err != nil {
			return fmt.Errorf("copying %s (mounted on the host's /etc): %v: %s", mp, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// copyHostEtc copies the host's /etc to etc, keeping what etc already has
// (a machine that falls back from the overlay keeps its login.defs).
func copyHostEtc(etc string) error {
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-an", "/etc/.", etc+"/").CombinedOutput(); err != nil {
		return fmt.Errorf("copying /etc: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return sameModeAndOwner("/etc", etc)
}

// sameModeAndOwner gives path the permission bits and owner of ref.
func sameModeAndOwner(ref, path string) error {
	fi, err := os.Stat(ref)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, fi.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return os.Lchown(path, int(st.Uid), int(st.Gid))
	}
	return nil
}

// hostEtcMounts lists what is mounted below the host's /etc (read once).
var hostEtcMounts = sync.OnceValue(func() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	return etcMountPoints(string(b))
})

// etcMountPoints returns the mount points below /etc in a mountinfo text
// (proc(5): the fifth field, with space, tab, newline and backslash written
// as octal escapes), each once.
func etcMountPoints(mountinfo string) []string {
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if strings.HasPrefix(mp, "/etc/") && filepath.Clean(mp) == mp && !seen[mp] {
			seen[mp] = true
			out = append(out, mp)
		}
	}
	return out
}

// unescapeMountinfo decodes mountinfo's octal escapes (\040 and the like).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// overlaySafe reports whether root can be named in overlay mount options
// (which separate with commas and colons).
func overlaySafe(root string) bool { return !strings.ContainsAny(root, ",:\\") }

// etcOverlayOK reports whether machines get an overlay /etc: overlayfs can
// be mounted on /etc in a mount namespace of its own with its upper layer
// in the machines' directory (probed there once: the data directory's file
// system decides, not the temporary directory's), and no machine's mount
// of it has failed since.
func (s *Server) etcOverlayOK() bool {
	s.overlayOnce.Do(func() { s.overlayOK.Store(overlayWorksIn(filepath.Join(s.dataDir, "machines"))) })
	return s.overlayOK.Load()
}

// overlayWorksIn tries an overlay on /etc with its layers in dir.
func overlayWorksIn(dir string) bool {
	probeDir, err := os.MkdirTemp(dir, ".overlay-probe-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(probeDir)
	for _, d := range []string{"etc", ".etc-work"} {
		if err := os.Mkdir(filepath.Join(probeDir, d), 0o755); err != nil {
			return false
		}
	}
	if !overlaySafe(probeDir) {
		return false
	}
	probe := mountEtcOverlay + ` && touch /etc/.drydock-probe`
	err = exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", probe, "probe", probeDir).Run()
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(probeDir, "etc", ".drydock-probe"))
	return err == nil
}

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
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	// Readable by the machine's users as the host's is, whatever the umask.
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(from); err == nil {
		mode = fi.Mode().Perm()
	}
	return os.Chmod(path, mode)
}

// namespace returns the pid of m's namespace holder, starting it if it is
// not running. A machine whose overlay /etc cannot be mounted (the probe
// passed, the mount still failed) falls back to a copy of the host's /etc,
// and so do the machines created after it. Call with s.mu held.
func (s *Server) namespace(m *machine) (int, error) {
	if !m.ownFS {
		return 0, nil
	}
	if !s.holderGone(m) {
		return m.nsPid, nil
	}
	pid, err := s.startHolder(m)
	if err == nil || !m.etcOverlay {
		return pid, err
	}
	s.log.Warn("overlay /etc could not be mounted: this machine and the next ones get a copy of the host's /etc", "machine_id", m.id, "err", err)
	s.overlayOK.Store(false)
	// What the upper layer holds (the machine's login.defs, and anything
	// the machine changed under an earlier holder) is kept: the copy fills
	// in the rest.
	if err := copyHostEtc(filepath.Join(m.root, "etc")); err != nil {
		return 0, err
	}
	_ = os.RemoveAll(filepath.Join(m.root, ".etc-work"))
	m.etcOverlay = false
	return s.startHolder(m)
}

// startHolder starts m's namespace holder and waits for it to say ready.
func (s *Server) startHolder(m *machine) (int, error) {
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
	// One pipe for both: an *os.File is handed to the holder as is, with
	// no goroutine copying from it (a bytes.Buffer would cost one per
	// machine, for as long as the holder lives).
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("starting the machine's namespace: %w", err)
	}
	r := bufio.NewReader(out)
	line, _ := r.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		rest, _ := io.ReadAll(r)
		return 0, fmt.Errorf("the machine's namespace did not start (unshare --mount, mount of its %s /etc and its /home): %s", mode, strings.TrimSpace(line+string(rest)))
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
// died on its own: the holder is this process's child, so waiting for its
// pid without blocking says exactly whether it still runs. Call with s.mu
// held.
func (s *Server) holderGone(m *machine) bool {
	if m.nsPid <= 0 {
		return true
	}
	if !reaped(m.nsPid) {
		return false // still running
	}
	delete(m.pgids, m.nsPid)
	m.nsPid = 0
	return true
}

// releaseHolder reaps m's namespace holder once its processes have been
// killed (or leaves it to the lifecycle loop if it has not exited yet).
// Call with s.mu held.
func (s *Server) releaseHolder(m *machine) {
	if m.nsPid > 0 {
		s.unreaped[m.nsPid] = true
		delete(m.pgids, m.nsPid)
		m.nsPid = 0
	}
	s.reapHolders()
}

// reapHolders reaps the namespace holders in s.unreaped that have exited
// (they are this process's children: their pid is not reused before), and
// keeps the others for the next call. Call with s.mu held.
func (s *Server) reapHolders() {
	for pid := range s.unreaped {
		if reaped(pid) {
			delete(s.unreaped, pid)
		}
	}
}

// reaped waits for child pid without blocking: true when it had exited
// (reaped now) or is no child to wait for (ECHILD: reaped before).
func reaped(pid int) bool {
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	return got == pid || errors.Is(err, syscall.ECHILD)
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
