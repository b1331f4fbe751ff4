package dedalus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// PhaseError says a machine settled somewhere the caller was not waiting for:
// it failed, was destroyed, or converged to another desired state.
type PhaseError struct {
	MachineID string
	Want      []MachinePhase
	Machine   *Machine
}

func (e *PhaseError) Error() string {
	msg := fmt.Sprintf("machine %s is %s (desired %s), not %v", e.MachineID, e.Machine.Status.Phase, e.Machine.DesiredState, e.Want)
	if e.Machine.Status.LastError != "" {
		msg += ": " + e.Machine.Status.LastError
	}
	return msg
}

// settle judges a machine state against the wanted phases: done (wanted), a
// *PhaseError when the machine can never get there (it failed, or it is
// destroyed or being destroyed), or neither (keep waiting). A machine that
// settled in another state is not an error: autosleep or another actor may
// still move it, so such waits are bounded by the caller's context.
func settle(m *Machine, want []MachinePhase) (bool, error) {
	if slices.Contains(want, m.Status.Phase) {
		return true, nil
	}
	gone := m.Status.Phase.Terminal() || m.DesiredState == DesiredDestroyed
	if gone && !slices.Contains(want, PhaseDestroyed) {
		return false, &PhaseError{MachineID: m.MachineID, Want: want, Machine: m}
	}
	if m.Status.Phase == PhaseFailed {
		return false, &PhaseError{MachineID: m.MachineID, Want: want, Machine: m}
	}
	return false, nil
}

// WaitForPhase waits until the machine is in one of the wanted phases and
// returns it. It follows the status stream and falls back to polling when the
// stream is unavailable. It fails with *PhaseError when the machine fails, is
// destroyed, or settles in another state; bound it with ctx.
func (c *Client) WaitForPhase(ctx context.Context, id string, want ...MachinePhase) (*Machine, error) {
	if len(want) == 0 {
		return nil, errors.New("wait for machine phase: no phase given")
	}
	streamOK := true
	for {
		m, err := c.GetMachine(ctx, id)
		if err != nil {
			return nil, err
		}
		if done, err := settle(m, want); done || err != nil {
			return m, err
		}
		// A converged machine's stream ends at once: poll until it moves.
		if streamOK && !m.Converged() {
			var done bool
			if m, done, streamOK, err = c.watchPhase(ctx, id, m.Status.Revision, want); done {
				return m, err
			}
			continue // stream ended: re-read and, if needed, watch again
		}
		if err := sleepCtx(ctx, c.opt.PollInterval); err != nil {
			return nil, fmt.Errorf("wait for machine %s to be %v: %w", id, want, err)
		}
	}
}

// watchPhase is WaitForPhase's turn on the status stream from revision
// rev: done when the wait is over (the machine, or the error to return),
// usable false when the stream cannot be used and polling must take over.
func (c *Client) watchPhase(ctx context.Context, id, rev string, want []MachinePhase) (m *Machine, done, usable bool, err error) {
	m, err = c.waitStream(ctx, id, rev, want)
	switch {
	case m != nil || isPhaseErr(err):
		return m, true, true, err
	case err != nil && ctx.Err() != nil:
		return nil, true, true, fmt.Errorf("wait for machine %s to be %v: %w", id, want, ctx.Err())
	case err != nil:
		// No usable stream (proxy buffering, older server): poll instead.
		return nil, false, false, nil
	}
	return nil, false, true, nil
}

func isPhaseErr(err error) bool {
	var pe *PhaseError
	return errors.As(err, &pe)
}

// waitStream follows the status stream from revision rev. It returns the
// machine once it is in a wanted phase, a *PhaseError, (nil, nil) when the
// stream ended normally, or another error when the stream cannot be used.
func (c *Client) waitStream(ctx context.Context, id, rev string, want []MachinePhase) (*Machine, error) {
	s, err := c.WatchMachine(ctx, id, rev)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	for {
		m, err := s.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if done, err := settle(m, want); done || err != nil {
			return m, err
		}
	}
}

// WakeAndWait wakes a machine and waits until it runs. A machine that already
// runs is returned without a wake call. On REVISION_MISMATCH (another actor
// changed the machine between our read and our wake) it re-reads and tries
// again, with an idempotency key derived from key and the attempt number so
// that the sequence of keys is the same after a crash.
func (c *Client) WakeAndWait(ctx context.Context, id, key string) (*Machine, error) {
	return c.transitionAndWait(ctx, id, key, DesiredRunning, c.WakeMachine, nil)
}

// WakeAndWaitFrom is WakeAndWait for a machine the caller has just read
// (m): when m is to be woken, the wake call goes out without reading the
// machine again, a round trip sooner. A stale m costs nothing but that
// round trip: the call is conditional on m's revision (If-Match), and a
// conflict re-reads. An m already meant to run is read again, as
// WakeAndWait does: it may have been put to sleep since.
func (c *Client) WakeAndWaitFrom(ctx context.Context, m *Machine, key string) (*Machine, error) {
	if m.DesiredState == DesiredRunning {
		return c.WakeAndWait(ctx, m.MachineID, key)
	}
	return c.transitionAndWait(ctx, m.MachineID, key, DesiredRunning, c.WakeMachine, m)
}

// SleepAndWait sleeps a machine and waits until it sleeps.
func (c *Client) SleepAndWait(ctx context.Context, id, key string) (*Machine, error) {
	return c.transitionAndWait(ctx, id, key, DesiredSleeping, c.SleepMachine, nil)
}

const maxRevisionRetries = 8

// transitionAndWait moves machine id to target and waits for its phase;
// read, when not nil, is the machine as the caller has just read it, used
// instead of the first read.
func (c *Client) transitionAndWait(ctx context.Context, id, key string, target DesiredState,
	mutate func(context.Context, string, Mutation) (*Machine, error), read *Machine) (*Machine, error) {
	if key == "" {
		return nil, fmt.Errorf("%s machine %s: an idempotency key is required", target, id)
	}
	want := target.Phase()
	var lastErr error
	for attempt := range maxRevisionRetries {
		m, err := read, error(nil)
		read = nil // a conflict's retry reads afresh
		if m == nil {
			if m, err = c.GetMachine(ctx, id); err != nil {
				return nil, err
			}
		}
		if m.Status.Phase.Terminal() || m.DesiredState == DesiredDestroyed {
			return nil, &PhaseError{MachineID: id, Want: []MachinePhase{want}, Machine: m}
		}
		if m.DesiredState != target {
			k := key
			if attempt > 0 {
				k = key + "-r" + strconv.Itoa(attempt)
			}
			_, err = mutate(ctx, id, Mutation{IdempotencyKey: k, IfMatch: m.Status.Revision})
			if HasCode(err, CodeRevisionMismatch) {
				lastErr = err
				if err := sleepCtx(ctx, c.backoff(attempt+1)); err != nil {
					return nil, err
				}
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		return c.WaitForPhase(ctx, id, want)
	}
	return nil, fmt.Errorf("%s machine %s: gave up after %d revision conflicts: %w", target, id, maxRevisionRetries, lastErr)
}

// ExecResult is the outcome of a finished execution with its output.
type ExecResult struct {
	Execution *Execution
	Output    *ExecutionOutput
}

// ExitError says a command ran and did not succeed.
type ExitError struct {
	MachineID, ExecutionID string
	Status                 ExecutionStatus
	ExitCode               *int64
	Signal                 *int64
	ErrorCode, Message     string
	// StderrTail is the end of the captured stderr (or stdout if stderr is empty).
	StderrTail string
}

func (e *ExitError) Error() string {
	s := fmt.Sprintf("execution %s on %s %s", e.ExecutionID, e.MachineID, e.Status)
	if e.ExitCode != nil {
		s += fmt.Sprintf(" with exit code %d", *e.ExitCode)
	}
	if e.Signal != nil {
		s += fmt.Sprintf(" by signal %d", *e.Signal)
	}
	if e.ErrorCode != "" {
		s += " (" + e.ErrorCode + ": " + e.Message + ")"
	}
	return s
}

// Err is nil when the command succeeded and an *ExitError otherwise.
func (r *ExecResult) Err() error {
	e := r.Execution
	if e.Status == ExecSucceeded {
		return nil
	}
	tail := r.Output.Stderr
	if tail == "" {
		tail = r.Output.Stdout
	}
	return &ExitError{
		MachineID: e.MachineID, ExecutionID: e.ExecutionID, Status: e.Status,
		ExitCode: e.ExitCode, Signal: e.Signal, ErrorCode: e.ErrorCode, Message: e.ErrorMessage,
		StderrTail: Tail(tail, 4096),
	}
}

// Tail returns at most the last n bytes of s, cut at a line start when possible.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	for i := 0; i < len(s) && i < 200; i++ {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}

// RunCommand starts a command with the given idempotency key (the same key
// after a crash finds the same execution instead of running it twice), waits
// for it to finish and returns its status and output. A command that exits
// non-zero is not a Go error: check ExecResult.Err.
func (c *Client) RunCommand(ctx context.Context, machineID string, req CreateExecutionRequest, idempotencyKey string) (*ExecResult, error) {
	e, err := c.CreateExecution(ctx, machineID, req, idempotencyKey)
	if err != nil {
		return nil, err
	}
	if e, err = c.WaitExecution(ctx, machineID, e.ExecutionID); err != nil {
		return nil, err
	}
	out, err := c.ExecutionOutput(ctx, machineID, e.ExecutionID)
	if err != nil {
		return nil, err
	}
	return &ExecResult{Execution: e, Output: out}, nil
}

// WaitExecution polls an execution until it finishes, backing off from
// 50ms to PollInterval*4 so short commands return quickly.
func (c *Client) WaitExecution(ctx context.Context, machineID, execID string) (*Execution, error) {
	delay := 50 * time.Millisecond
	for {
		e, err := c.GetExecution(ctx, machineID, execID)
		if err != nil {
			return nil, err
		}
		if e.Status.Terminal() {
			return e, nil
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return nil, fmt.Errorf("wait for execution %s on %s: %w", execID, machineID, err)
		}
		delay = min(delay*2, c.opt.PollInterval*4)
	}
}
