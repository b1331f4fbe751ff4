package emulator

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

type createExecutionBody struct {
	Command   []string          `json:"command"`
	Cwd       *string           `json:"cwd"`
	Env       map[string]string `json:"env"`
	Stdin     *string           `json:"stdin"`
	TimeoutMS *int64            `json:"timeout_ms"`
}

// check validates a create request; it returns the names of its
// environment variables, sorted.
func (b *createExecutionBody) check() ([]string, *apiError) {
	if err := checkCommand(b.Command); err != nil {
		return nil, err
	}
	keys, err := checkEnv(b.Env)
	if err != nil {
		return nil, err
	}
	if b.TimeoutMS != nil && *b.TimeoutMS < 0 {
		return nil, validation("body.timeout_ms", "must not be negative", *b.TimeoutMS)
	}
	if b.Cwd != nil && strings.IndexByte(*b.Cwd, 0) >= 0 {
		return nil, validation("body.cwd", "must not contain NUL bytes", *b.Cwd)
	}
	return keys, nil
}

// checkCommand validates an execution's argv: not empty, a named
// program, no NUL bytes.
func checkCommand(argv []string) *apiError {
	if len(argv) == 0 {
		return validation("body.command", "must be a non-empty argv array", argv)
	}
	if argv[0] == "" {
		return validation("body.command[0]", "must not be empty", "")
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return validation(fmt.Sprintf("body.command[%d]", i), "must not contain NUL bytes", a)
		}
	}
	return nil
}

// checkEnv validates an execution's environment; it returns the
// variables' names, sorted.
func checkEnv(env map[string]string) ([]string, *apiError) {
	keys := make([]string, 0, len(env))
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, validation("body.env."+k, "invalid environment variable", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

func (s *Server) createExecution(c *call) (int, any, error) {
	var b createExecutionBody
	if err := decodeBody(c.body, &b); err != nil {
		return 0, nil, err
	}
	keys, aerr := b.check()
	if aerr != nil {
		return 0, nil, aerr
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
	e := &execution{
		id: newID("ex-"), seq: m.execs.next(), machineID: m.id, command: b.Command,
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
	m.execs.add(e)
	s.counters.Executions++
	s.schedule(m, e)
	return http.StatusOK, e.response(), nil
}

// schedule starts a new execution on a running machine; on a sleeping one
// it starts the wake the execution waits for. Call with s.mu held.
func (s *Server) schedule(m *machine, e *execution) {
	e.status = dedalus.ExecQueued
	switch m.phase {
	case dedalus.PhaseRunning:
		e.lifecycle()
		s.startExecution(m, e)
		return
	case dedalus.PhaseSleeping, dedalus.PhaseStopping:
		e.status = dedalus.ExecWakeInProgress
		e.lifecycle()
		s.beginWake(m, "execution requested")
		return
	case dedalus.PhaseStarting:
		if m.wakeFromSleep {
			e.status = dedalus.ExecWakeInProgress
		}
	}
	e.lifecycle()
}

// lookupExec finds the request's machine and execution. Callers hold s.mu.
func (s *Server) lookupExec(c *call) (*machine, *execution, *apiError) {
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return nil, nil, err
	}
	e, err := m.execs.get(c.param("execution_id"))
	return m, e, err
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
	return listChildren(s, c, func(m *machine) *children[*execution] { return &m.execs }, (*execution).response)
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

// deleteExecution cancels a running or pending execution (waiting up to
// cancelWait for a running one to end) and forgets it.
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
	if m.execs.remove(e) {
		// Leftover background processes may still hold the output pipes;
		// the machine closes them when it is destroyed.
		m.strayPipes = append(m.strayPipes, e.pipes...)
		e.pipes = nil
	}
	return http.StatusOK, resp, nil
}
