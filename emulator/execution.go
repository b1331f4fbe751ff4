package emulator

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

const (
	outputGrace  = 200 * time.Millisecond // how long to wait for output after exit
	chunkSize    = 32 << 10
	cancelWait   = 5 * time.Second
	stdinTimeout = time.Second
)

// execution is one execution of a machine. Guarded by Server.mu.
type execution struct {
	id        string
	seq       int64
	machineID string
	command   []string
	cwdReq    string
	env       map[string]string
	envKeys   []string
	stdin     string
	timeout   time.Duration

	status      dedalus.ExecutionStatus
	createdAt   time.Time
	startedAt   time.Time
	completedAt time.Time
	cwdView     string
	exitCode    *int64
	signal      *int64
	errCode     string
	errMsg      string

	stdout, stderr capBuf
	events         []dedalus.ExecutionEvent

	pgid      int
	exited    bool
	timedOut  bool
	cancelled bool
	destroyed bool
	timer     *time.Timer
	pipes     []*os.File
	done      chan struct{}
}

// capBuf keeps the first cap bytes of a stream and counts all of them.
type capBuf struct {
	data  []byte
	total int64
}

func (b *capBuf) truncated() bool { return b.total > int64(len(b.data)) }

func (e *execution) closePipes() {
	for _, f := range e.pipes {
		_ = f.Close()
	}
}

func (e *execution) response() dedalus.Execution {
	x := dedalus.Execution{
		ExecutionID:     e.id,
		MachineID:       e.machineID,
		Status:          e.status,
		Command:         append([]string(nil), e.command...),
		CreatedAt:       e.createdAt,
		Cwd:             e.cwdView,
		EnvKeys:         e.envKeys,
		StartedAt:       e.startedAt,
		CompletedAt:     e.completedAt,
		ExitCode:        e.exitCode,
		Signal:          e.signal,
		ErrorCode:       e.errCode,
		ErrorMessage:    e.errMsg,
		StdoutBytes:     e.stdout.total,
		StderrBytes:     e.stderr.total,
		StdoutTruncated: e.stdout.truncated(),
		StderrTruncated: e.stderr.truncated(),
	}
	return x
}

func (e *execution) event(ev dedalus.ExecutionEvent) {
	ev.Sequence = int64(len(e.events)) + 1
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	e.events = append(e.events, ev)
}

func (e *execution) lifecycle() {
	e.event(dedalus.ExecutionEvent{
		Type: dedalus.EventLifecycle, Status: e.status, ExitCode: e.exitCode, Signal: e.signal,
		ErrorCode: e.errCode, ErrorMessage: e.errMsg,
	})
}

func i64(v int64) *int64 { return &v }

// resolveCwd maps the request's cwd into the machine root. It returns the
// host directory and the path as the machine sees it.
func resolveCwd(m *machine, cwd string) (host, view string) {
	switch {
	case cwd == "":
		view = "/root"
	case strings.HasPrefix(cwd, "/"):
		view = filepath.Clean(cwd)
	default:
		view = filepath.Clean("/root/" + cwd)
	}
	// Clean of a rooted path never climbs above "/".
	view = filepath.Clean("/" + view)
	return filepath.Join(m.root, view), view
}

func (s *Server) buildEnv(m *machine, e *execution) []string {
	env := map[string]string{
		"PATH": os.Getenv("PATH"),
		"HOME": m.home,
		"USER": "root",
		"LANG": "C.UTF-8",
		"PORT": strconv.Itoa(m.appPort),
	}
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
	}
	for k, v := range e.env {
		env[k] = v
	}
	env[EnvMachineID] = m.id
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func envLookup(env []string, key string) string {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return kv[len(key)+1:]
		}
	}
	return ""
}

// lookPath resolves argv0 like a shell would, with the execution's PATH; a
// relative path with a slash is relative to the working directory.
func lookPath(argv0, dir string, env []string) (string, error) {
	isExec := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
	}
	if strings.Contains(argv0, "/") {
		p := argv0
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if !isExec(p) {
			return "", fmt.Errorf("%s: no such executable file", argv0)
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(envLookup(env, "PATH")) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if p := filepath.Join(d, argv0); isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: executable file not found in $PATH", argv0)
}

// finishPending ends an execution that never started. Call with s.mu held.
func (s *Server) finishPending(m *machine, e *execution, st dedalus.ExecutionStatus, code, msg string) {
	e.status, e.errCode, e.errMsg = st, code, msg
	e.completedAt = time.Now()
	e.lifecycle()
	close(e.done)
}

// startExecution starts e's process on the running machine m. Call with s.mu held.
func (s *Server) startExecution(m *machine, e *execution) {
	cmd, code, err := s.command(m, e)
	if err != nil {
		s.finishPending(m, e, dedalus.ExecFailed, code, err.Error())
		return
	}
	outR, errR, err := startPiped(cmd)
	if err != nil {
		s.finishPending(m, e, dedalus.ExecFailed, ExecErrStartFailed, err.Error())
		return
	}
	e.pipes = []*os.File{outR, errR}
	e.pgid = cmd.Process.Pid
	m.pgids[e.pgid] = true
	e.status = dedalus.ExecRunning
	e.startedAt = time.Now()
	e.lifecycle()
	m.runningExecs++
	m.lastActivity = e.startedAt
	s.log.Info("execution started", "machine_id", m.id, "execution_id", e.id, "pid", e.pgid, "argv0", e.command[0])

	outDone, errDone := make(chan struct{}), make(chan struct{})
	s.goroutine(func() { s.pump(e, dedalus.EventStdout, outR, outDone) })
	s.goroutine(func() { s.pump(e, dedalus.EventStderr, errR, errDone) })
	if e.timeout > 0 {
		e.timer = time.AfterFunc(e.timeout, func() { s.timeOut(e) })
	}
	s.goroutine(func() { s.reap(m, e, cmd, outDone, errDone) })
}

// command is the process e runs on m: its argv resolved in the machine's
// working directory and environment (and entered into the machine's
// namespace when it has one). On failure it gives the execution's
// error_code. Call with s.mu held.
func (s *Server) command(m *machine, e *execution) (*exec.Cmd, string, error) {
	if s.closed {
		return nil, ExecErrStartFailed, errors.New("the emulator is shutting down")
	}
	host, view := resolveCwd(m, e.cwdReq)
	e.cwdView = view
	if fi, err := os.Stat(host); err != nil || !fi.IsDir() {
		return nil, ExecErrCwdNotFound, fmt.Errorf("working directory %s does not exist", view)
	}
	env := s.buildEnv(m, e)
	path, err := lookPath(e.command[0], host, env)
	if err != nil {
		return nil, ExecErrCommandNotFound, err
	}
	args := append([]string(nil), e.command...)
	ns, err := s.namespace(m)
	if err != nil {
		return nil, ExecErrStartFailed, err
	}
	if ns > 0 {
		if path, args, err = inNamespace(ns, host, path, args); err != nil {
			return nil, ExecErrStartFailed, err
		}
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        args,
		Dir:         host,
		Env:         env,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		WaitDelay:   stdinTimeout,
	}
	if e.stdin != "" {
		cmd.Stdin = strings.NewReader(e.stdin)
	}
	return cmd, "", nil
}

// startPiped starts cmd with its stdout and stderr on pipes and returns
// their read ends.
func startPiped(cmd *exec.Cmd) (*os.File, *os.File, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, nil, err
	}
	return outR, errR, nil
}

// timeOut kills e's process group when its timeout passes.
func (s *Server) timeOut(e *execution) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !e.exited {
		e.timedOut = true
		_ = syscall.Kill(-e.pgid, syscall.SIGKILL)
	}
}

// reap waits for e's process to exit and for its output to be read (for
// outputGrace at most: leftover background processes may hold the pipes
// open), then records how it ended.
func (s *Server) reap(m *machine, e *execution, cmd *exec.Cmd, read ...chan struct{}) {
	werr := cmd.Wait()
	s.mu.Lock()
	e.exited = true
	if e.timer != nil {
		e.timer.Stop()
	}
	if err := syscall.Kill(-e.pgid, 0); errors.Is(err, syscall.ESRCH) {
		delete(m.pgids, e.pgid)
	}
	s.mu.Unlock()
	grace := time.NewTimer(outputGrace)
	defer grace.Stop()
wait:
	for _, ch := range read {
		select {
		case <-ch:
		case <-grace.C:
			break wait
		case <-s.done:
			break wait
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finish(m, e, cmd.ProcessState, werr)
}

// pump copies one output stream into the execution, up to the output cap.
func (s *Server) pump(e *execution, typ dedalus.ExecutionEventType, f *os.File, done chan struct{}) {
	defer close(done)
	defer f.Close()
	buf := make([]byte, chunkSize)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			s.mu.Lock()
			if !e.status.Terminal() {
				b := &e.stdout
				if typ == dedalus.EventStderr {
					b = &e.stderr
				}
				b.total += int64(n)
				if room := s.cfg.OutputCap - int64(len(b.data)); room > 0 {
					keep := buf[:min(int64(n), room)]
					b.data = append(b.data, keep...)
					e.event(dedalus.ExecutionEvent{Type: typ, Chunk: string(keep)})
				}
			}
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// finish records how the process ended. Call with s.mu held.
func (s *Server) finish(m *machine, e *execution, ps *os.ProcessState, werr error) {
	if e.status.Terminal() {
		return
	}
	e.completedAt = time.Now()
	var ws syscall.WaitStatus
	haveWS := false
	if ps != nil {
		ws, haveWS = ps.Sys().(syscall.WaitStatus)
	}
	if haveWS && ws.Signaled() {
		e.signal = i64(int64(ws.Signal()))
	}
	switch {
	case !haveWS:
		e.status, e.errCode = dedalus.ExecFailed, ExecErrStartFailed
		e.errMsg = fmt.Sprintf("waiting for process: %v", werr)
	case e.timedOut:
		e.status, e.errCode = dedalus.ExecFailed, ExecErrTimeout
		e.errMsg = fmt.Sprintf("execution exceeded its timeout of %dms and was killed", e.timeout.Milliseconds())
		e.signal = i64(int64(syscall.SIGKILL))
	case e.cancelled:
		e.status, e.errCode, e.errMsg = dedalus.ExecCancelled, ExecErrCancelled, "execution cancelled"
	case e.destroyed:
		e.status, e.errCode, e.errMsg = dedalus.ExecFailed, ExecErrMachineDestroyed, "machine was destroyed"
	case ws.Signaled():
		e.status = dedalus.ExecFailed
		e.errMsg = fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	case ws.ExitStatus() == 0:
		e.status, e.exitCode = dedalus.ExecSucceeded, i64(0)
	default:
		e.status, e.exitCode = dedalus.ExecFailed, i64(int64(ws.ExitStatus()))
	}
	e.lifecycle()
	close(e.done)
	m.runningExecs--
	m.lastActivity = e.completedAt
	s.log.Info("execution finished", "machine_id", m.id, "execution_id", e.id, "status", e.status,
		"exit_code", derefOr(e.exitCode, -1), "signal", derefOr(e.signal, 0))
}

func derefOr(p *int64, d int64) int64 {
	if p == nil {
		return d
	}
	return *p
}
