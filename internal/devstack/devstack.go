// Package devstack runs a whole local Drydock (Temporal dev server, Dedalus
// emulator, worker, webhook server) as child processes for `make dev`: it
// starts them in order, waits until each answers, prefixes their output with
// their name, and stops them all, newest first, on Ctrl-C or when one dies.
package devstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Service is one child process.
type Service struct {
	Name string
	Path string
	Args []string
	Env  []string // added to the parent's environment
	// Ready reports nil once the service answers. Nil Ready means started = ready.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds the wait for Ready (default 60s).
	ReadyTimeout time.Duration
}

type proc struct {
	svc  Service
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Stack is the set of running services.
type Stack struct {
	out   io.Writer
	mu    sync.Mutex
	procs []*proc
	died  chan *proc
}

// New returns an empty stack writing the services' output to out.
func New(out io.Writer) *Stack {
	return &Stack{out: &lockedWriter{w: out}, died: make(chan *proc, 16)}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Start launches svc and waits until it is ready, the context ends, or it exits.
func (s *Stack) Start(ctx context.Context, svc Service) error {
	cmd := exec.Command(svc.Path, svc.Args...)
	cmd.Env = append(os.Environ(), svc.Env...)
	// Own process group: Ctrl-C reaches only this supervisor, which then
	// stops the services in order instead of all at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s (%s): %w", svc.Name, svc.Path, err)
	}
	p := &proc{svc: svc, cmd: cmd, done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(s.out, "%-9s| %s\n", svc.Name, sc.Text())
		}
	}()
	go func() {
		<-copied
		p.err = cmd.Wait()
		close(p.done)
		s.died <- p
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()

	if svc.Ready == nil {
		return nil
	}
	timeout := svc.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = svc.Ready(rctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v", svc.Name, p.err)
		case <-rctx.Done():
			return fmt.Errorf("%s not ready after %s: %v", svc.Name, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Wait blocks until ctx ends (nil) or a service exits (an error naming it).
func (s *Stack) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case p := <-s.died:
		return fmt.Errorf("%s exited: %v", p.svc.Name, p.err)
	}
}

// Stop terminates the services newest first: SIGTERM, then SIGKILL after grace.
func (s *Stack) Stop(grace time.Duration) error {
	s.mu.Lock()
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		select {
		case <-p.done:
			continue
		default:
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not stop within %s and was killed", p.svc.Name, grace))
		}
	}
	return errors.Join(errs...)
}

// HTTPReady is a Service.Ready check: GET url answers 200.
func HTTPReady(url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}
