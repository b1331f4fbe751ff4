package emulator

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A machine's own users and homes. Every command of a machine runs in the
// machine's mount namespace, held by one process per machine (the
// namespace holder), where /etc is the machine's copy of the host's /etc
// (taken when the machine was created) and /home is the machine's own
// directory: useradd on one machine creates a user in that machine only,
// with its home under the machine's directory, and a process can run as it
// (setpriv, runuser), as on a real machine. The rest of the file system is
// the host's. It needs root (unshare, nsenter); without, a machine's
// commands share the host's /etc and /home.

// holderScript binds the machine's /etc and /home ($1: the machine's root
// directory), says ready, and keeps the namespace alive.
const holderScript = `set -e
mount --bind "$1/etc" /etc
mount --bind "$1/home" /home
echo ready
exec sleep ` + holderSleep + `
`

// holderSleep is how long the holder sleeps (its argument): forever.
const holderSleep = "2147483647"

// prepareMachineFS gives a new machine its /etc (a copy of the host's) and
// /home. It reports whether the machine can have its own namespace.
func prepareMachineFS(root string) error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	if err := os.MkdirAll(filepath.Join(root, "home"), 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", "/etc", filepath.Join(root, "etc")).CombinedOutput(); err != nil {
		return fmt.Errorf("copying /etc: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// namespace returns the pid of m's namespace holder, starting it if it is
// not running. Call with s.mu held.
func (s *Server) namespace(m *machine) (int, error) {
	if !m.ownFS {
		return 0, nil
	}
	if m.nsPid > 0 && syscall.Kill(m.nsPid, 0) == nil {
		if st, ok := readStat(m.nsPid); ok && st.state != 'Z' {
			return m.nsPid, nil
		}
	}
	out, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer out.Close()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", holderScript, "holder", m.root)
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
	s.goroutine(func() { _ = cmd.Wait() })
	return m.nsPid, nil
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
