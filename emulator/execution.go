package emulator

import (
	"errors"
	"fmt"
	"net/http"
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
	if s.closed {
		s.finishPending(m, e, dedalus.ExecFailed, ExecErrStartFailed, "the emulator is shutting down")
		return
	}
	host, view := resolveCwd(m, e.cwdReq)
	e.cwdView = view
	if fi, err := os.Stat(host); err != nil || !fi.IsDir() {
		s.finishPending(m, e, dedalus.ExecFailed, ExecErrCwdNotFound, fmt.Sprintf("working directory %s does not exist", view))
		return
	}
	env := s.buildEnv(m, e)
	path, err := lookPath(e.command[0], host, env)
	if err != nil {
		s.finishPending(m, e, dedalus.ExecFailed, ExecErrCommandNotFound, err.Error())
		return
	}
	args := append([]string(nil), e.command...)
	if ns, err := s.namespace(m); err != nil {
		s.finishPending(m, e, dedalus.ExecFailed, ExecErrStartFailed, err.Error())
		return
	} else if ns > 0 {
		if path, args, err = inNamespace(ns, host, path, args); err != nil {
			s.finishPending(m, e, dedalus.ExecFailed, ExecErrStartFailed, err.Error())
			return
		}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		s.finishPending(m, e, dedalus.ExecFailed, ExecErrStartFailed, err.Error())
		return
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		s.finishPending(m, e, dedalus.ExecFailed, ExecErrStartFailed, err.Error())
		return
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        args,
		Dir:         host,
		Env:         env,
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		WaitDelay:   stdinTimeout,
	}
	if e.stdin != "" {
		cmd.Stdin = strings.NewReader(e.stdin)
	}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
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
		e.timer = time.AfterFunc(e.timeout, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !e.exited {
				e.timedOut = true
				_ = syscall.Kill(-e.pgid, syscall.SIGKILL)
			}
		})
	}
	s.goroutine(func() {
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
		for _, ch := range []chan struct{}{outDone, errDone} {
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
	})
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

// ---- handlers ----

type createExecutionBody struct {
	Command   []string          `json:"command"`
	Cwd       *string           `json:"cwd"`
	Env       map[string]string `json:"env"`
	Stdin     *string           `json:"stdin"`
	TimeoutMS *int64            `json:"timeout_ms"`
}

func (s *Server) createExecution(c *call) (int, any, error) {
	var b createExecutionBody
	if err := decodeBody(c.body, &b); err != nil {
		return 0, nil, err
	}
	if len(b.Command) == 0 {
		return 0, nil, validation("body.command", "must be a non-empty argv array", b.Command)
	}
	if b.Command[0] == "" {
		return 0, nil, validation("body.command[0]", "must not be empty", "")
	}
	for i, a := range b.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return 0, nil, validation(fmt.Sprintf("body.command[%d]", i), "must not contain NUL bytes", a)
		}
	}
	keys := make([]string, 0, len(b.Env))
	for k, v := range b.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return 0, nil, validation("body.env."+k, "invalid environment variable", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if b.TimeoutMS != nil && *b.TimeoutMS < 0 {
		return 0, nil, validation("body.timeout_ms", "must not be negative", *b.TimeoutMS)
	}
	if b.Cwd != nil && strings.IndexByte(*b.Cwd, 0) >= 0 {
		return 0, nil, validation("body.cwd", "must not contain NUL bytes", *b.Cwd)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return 0, nil, err
	}
	switch m.phase {
	case dedalus.PhaseDestroying, dedalus.PhaseDestroyed, dedalus.PhaseFailed:
		return 0, nil, invalidState(m, dedalus.DesiredRunning, dedalus.PhaseRunning)
	}
	if s.closed {
		return 0, nil, errBody(http.StatusServiceUnavailable, dedalus.CodeDependencyUnavailable, "runtime unavailable", true, 0, nil)
	}
	m.execSeq++
	e := &execution{
		id: newID("ex-"), seq: m.execSeq, machineID: m.id, command: b.Command,
		env: b.Env, createdAt: time.Now(), done: make(chan struct{}),
	}
	if len(keys) > 0 {
		e.envKeys = keys
	}
	if b.Cwd != nil {
		e.cwdReq = *b.Cwd
	}
	if b.Stdin != nil {
		e.stdin = *b.Stdin
	}
	if b.TimeoutMS != nil {
		e.timeout = time.Duration(*b.TimeoutMS) * time.Millisecond
	}
	_, e.cwdView = resolveCwd(m, e.cwdReq)
	m.execs[e.id] = e
	m.execOrder = append(m.execOrder, e)
	s.counters.Executions++

	switch m.phase {
	case dedalus.PhaseRunning:
		e.status = dedalus.ExecQueued
		e.lifecycle()
		s.startExecution(m, e)
	case dedalus.PhaseSleeping, dedalus.PhaseStopping:
		e.status = dedalus.ExecWakeInProgress
		e.lifecycle()
		s.beginWake(m, "execution requested")
	case dedalus.PhaseStarting:
		e.status = dedalus.ExecQueued
		if m.wakeFromSleep {
			e.status = dedalus.ExecWakeInProgress
		}
		e.lifecycle()
	default:
		e.status = dedalus.ExecQueued
		e.lifecycle()
	}
	return http.StatusOK, e.response(), nil
}

func (s *Server) lookupExec(c *call) (*machine, *execution, *apiError) {
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return nil, nil, err
	}
	id := c.param("execution_id")
	e := m.execs[id]
	if e == nil {
		return nil, nil, notFound("execution", id)
	}
	return m, e, nil
}

func (s *Server) getExecution(c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, e, err := s.lookupExec(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, e.response(), nil
}

func (s *Server) listExecutions(c *call) (int, any, error) {
	limit, after, perr := pageParams(c.r)
	if perr != nil {
		return 0, nil, perr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return 0, nil, err
	}
	page, next := paginate(m.execOrder, func(e *execution) int64 { return e.seq }, limit, after)
	items := make([]dedalus.Execution, len(page))
	for i, e := range page {
		items[i] = e.response()
	}
	return http.StatusOK, dedalus.Page[dedalus.Execution]{Items: items, NextCursor: next}, nil
}

func (s *Server) getExecutionOutput(c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, e, err := s.lookupExec(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, dedalus.ExecutionOutput{
		ExecutionID:     e.id,
		Stdout:          string(e.stdout.data),
		Stderr:          string(e.stderr.data),
		StdoutBytes:     e.stdout.total,
		StderrBytes:     e.stderr.total,
		StdoutTruncated: e.stdout.truncated(),
		StderrTruncated: e.stderr.truncated(),
	}, nil
}

func (s *Server) listExecutionEvents(c *call) (int, any, error) {
	limit, after, perr := pageParams(c.r)
	if perr != nil {
		return 0, nil, perr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, e, err := s.lookupExec(c)
	if err != nil {
		return 0, nil, err
	}
	page, next := paginate(e.events, func(ev dedalus.ExecutionEvent) int64 { return ev.Sequence }, limit, after)
	return http.StatusOK, dedalus.Page[dedalus.ExecutionEvent]{Items: page, NextCursor: next}, nil
}

func (s *Server) deleteExecution(c *call) (int, any, error) {
	s.mu.Lock()
	m, e, err := s.lookupExec(c)
	if err != nil {
		s.mu.Unlock()
		return 0, nil, err
	}
	switch {
	case e.status == dedalus.ExecRunning:
		e.cancelled = true
		if !e.exited {
			_ = syscall.Kill(-e.pgid, syscall.SIGKILL)
		}
		s.mu.Unlock()
		t := time.NewTimer(cancelWait)
		select {
		case <-e.done:
		case <-t.C:
		case <-s.done:
		}
		t.Stop()
		s.mu.Lock()
	case !e.status.Terminal():
		s.finishPending(m, e, dedalus.ExecCancelled, ExecErrCancelled, "execution cancelled before it started")
	}
	defer s.mu.Unlock()
	resp := e.response()
	if m.execs[e.id] == e {
		// Leftover background processes may still hold the output pipes;
		// the machine closes them when it is destroyed.
		m.strayPipes = append(m.strayPipes, e.pipes...)
		e.pipes = nil
		delete(m.execs, e.id)
		for i, x := range m.execOrder {
			if x == e {
				m.execOrder = append(m.execOrder[:i:i], m.execOrder[i+1:]...)
				break
			}
		}
	}
	return http.StatusOK, resp, nil
}
