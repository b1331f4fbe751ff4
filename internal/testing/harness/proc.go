// Package harness runs a whole Drydock for `make bench` and `make chaos`: a
// real `temporal server start-dev` (restartable on a persisted database),
// the Dedalus emulator and the GitHub API test double in this process, and
// the real worker, webhook and router binaries as child processes that can
// be killed and restarted at any moment.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/internal/devstack"
)

// Proc is a child process that can be killed and started again with the
// same command line and environment.
type Proc struct {
	Name string
	Path string
	Args []string
	Env  []string // the whole environment

	out  io.Writer
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	exit error // the last run's exit (cmd.Wait), valid once done is closed
	// Starts counts how often the process was started.
	starts int
}

// Start launches the process. It is an error to start a running process.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.Name)
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// Own process group, so that a kill reaches the children too; and the
	// child dies with the harness, even when the harness is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	p.starts++
	done := p.done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exit = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Signal sends sig to the running process's group and returns at once.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Wait waits up to timeout for the process to exit by itself and returns
// how it exited (nil: status 0). It fails if the process is still running
// after timeout (it is left running).
func (p *Proc) Wait(timeout time.Duration) (exit error, err error) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil, fmt.Errorf("%s is not running", p.Name)
	}
	select {
	case <-done:
	case <-time.After(timeout):
		return nil, fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == cmd {
		p.cmd = nil
	}
	return p.exit, nil
}

// Running reports whether the process was started and has not exited.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid is the running process's ID (0 when not running).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Starts is how many times the process has been started.
func (p *Proc) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Stop sends sig to the process group and waits for the process to exit;
// after grace it sends SIGKILL. Stopping a stopped process does nothing.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Kill SIGKILLs the process (a crash) and waits for it to be gone.
func (p *Proc) Kill() { p.Stop(syscall.SIGKILL, time.Minute) }

// Restart kills the process and starts it again.
func (p *Proc) Restart() error {
	p.Kill()
	return p.Start()
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitFor polls ready every 50ms until it returns nil or ctx ends.
func WaitFor(ctx context.Context, what string, ready func(context.Context) error) error {
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = ready(attempt)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// HTTPReady is a readiness check: GET url answers 200.
func HTTPReady(url string) func(context.Context) error { return devstack.HTTPReady(url) }

// RepoRoot finds the module root (the directory holding go.mod) above the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/drydock-dev/drydock\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the Drydock repository (go.mod) is not above the working directory")
		}
		dir = parent
	}
}

// Build compiles the Drydock binaries the harness runs into dir.
func Build(ctx context.Context, root, dir string) error {
	pkgs := []string{"./worker", "./webhook", "./router", "./internal/testing/testenv/fakerunner"}
	args := append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, stderr.String())
	}
	return nil
}

// ShareWithMachines lets the unprivileged users of the emulator's machines
// (a pool machine's runner user) reach dir: the directories from dir up to
// the system's temporary directory, which the Go tools and the testing
// package create for their owner only, become traversable by everyone
// (o+x, not readable).
func ShareWithMachines(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	top := filepath.Clean(os.TempDir())
	for p := dir; p != top && p != filepath.Dir(p) && strings.HasPrefix(p, top+string(os.PathSeparator)); p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if err := os.Chmod(p, st.Mode()|0o011); err != nil {
			return err
		}
	}
	return nil
}

// JobWritableDirBase is where JobWritableDir makes its directories: not
// under /tmp, /var/tmp or /dev/shm, whose files of the runner user a pool
// machine's cleanup removes after every job (the emulator's machines share
// the host's temporary directories).
const JobWritableDirBase = "/var/lib/drydock-tests"

// JobWritableDir makes a directory the runner jobs of a test (a pool
// machine's unprivileged runner user) can write to (mode 1777, like /tmp)
// and that survives the machines' cleanups; remove it when done.
func JobWritableDir() (string, error) {
	if err := os.MkdirAll(JobWritableDirBase, 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(JobWritableDirBase, "job-*")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o777|os.ModeSticky)
}
