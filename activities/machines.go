// Package activities holds Drydock's Temporal activities: the steps that act
// on the outside world (Dedalus machines, GitHub). Each activity is a method
// on a struct holding its dependencies, is idempotent, and classifies its
// errors: transient ones are returned as retryable (honouring the server's
// retry_after_ms through NextRetryDelay), the rest as non-retryable
// application errors with a stable type that workflows can switch on.
package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/metrics"
)

// Stable error types of non-retryable activity failures.
const (
	ErrTypeNotFound        = "DedalusNotFound"
	ErrTypeInvalidState    = "DedalusInvalidState"
	ErrTypeKeyReused       = "DedalusIdempotencyKeyReused"
	ErrTypeRejected        = "DedalusRequestRejected" // 400/401/403/422 and other answers that will never succeed
	ErrTypeMachineFailed   = "MachineFailed"
	ErrTypeCommandFailed   = "CommandFailed"
	ErrTypeInvalidArgument = "InvalidArgument"
	// ErrTypeQuotaExceeded: Dedalus refused a create because the account is
	// at a limit of its plan (dedalus.IsQuotaExceeded). Not retried by the
	// activity: the workflow waits (and says so on the PR) and tries again.
	ErrTypeQuotaExceeded = "DedalusQuotaExceeded"
)

// Machines drives Dedalus machines. Register it with a worker:
// w.RegisterActivity(&activities.Machines{Client: c}).
type Machines struct {
	Client *dedalus.Client
	// HeartbeatEvery is how often long waits heartbeat (default 5s).
	HeartbeatEvery time.Duration
	// Metrics records wake latencies (nil: none).
	Metrics *metrics.Machines
}

// idempotencyKey is stable across retries and worker crashes of one activity:
// it is made of the workflow ID, the run ID and the activity ID. The SDK
// numbers local activities with a counter of their own ("1", "2", ... like
// regular activities), so a local activity's key also carries "local" and its
// type: a local wake must never reuse the key of an earlier regular wake of
// the same run (Dedalus would replay that wake's old answer). Regular keys
// keep their original form, so a retry that spans an upgrade keeps its key.
func idempotencyKey(ctx context.Context, suffix string) string {
	info := activity.GetInfo(ctx)
	id := info.ActivityID
	if info.IsLocalActivity {
		id = "local:" + info.ActivityType.Name + ":" + id
	}
	k := fmt.Sprintf("drydock:%s:%s:%s", info.WorkflowExecution.ID, info.WorkflowExecution.RunID, id)
	if suffix != "" {
		k += ":" + suffix
	}
	return k
}

// classify turns a client error into what Temporal should do with it.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the activity was cancelled or timed out: Temporal decides
	}
	var pe *dedalus.PhaseError
	if errors.As(err, &pe) {
		return temporal.NewNonRetryableApplicationError(pe.Error(), ErrTypeMachineFailed, nil, pe.Machine.Status.Phase)
	}
	ae, ok := dedalus.AsAPIError(err)
	if !ok {
		return err // transport failure: retry with the activity's policy
	}
	switch {
	case ae.Code == dedalus.CodeIdempotencyKeyReused:
		return temporal.NewNonRetryableApplicationError(ae.Error(), ErrTypeKeyReused, nil)
	case ae.Code == dedalus.CodeInvalidState:
		return temporal.NewNonRetryableApplicationError(ae.Error(), ErrTypeInvalidState, nil, ae.Details)
	case ae.StatusCode == 404:
		return temporal.NewNonRetryableApplicationError(ae.Error(), ErrTypeNotFound, nil)
	case ae.Retryable:
		return temporal.NewApplicationErrorWithOptions(ae.Error(), "DedalusUnavailable", temporal.ApplicationErrorOptions{
			NextRetryDelay: ae.RetryAfter, // 0 = the retry policy's own backoff
		})
	default:
		return temporal.NewNonRetryableApplicationError(ae.Error(), ErrTypeRejected, nil, ae.StatusCode)
	}
}

// heartbeatWhile heartbeats every HeartbeatEvery (default 5s) until stop is called.
func (a *Machines) heartbeatWhile(ctx context.Context, details ...any) (stop func()) {
	every := a.HeartbeatEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	return heartbeatDuring(ctx, every, details...)
}

// MachineSpec is the size and idle window of a machine to create.
type MachineSpec struct {
	VCPU       float64
	MemoryMiB  int64
	StorageGiB int64
	Autosleep  string // e.g. "15m"; "" = platform default
}

// MachineRef is what workflows keep about a machine, and what they account
// its awake time from (workflows.AwakeMeter).
type MachineRef struct {
	MachineID string
	Phase     dedalus.MachinePhase
	Revision  string
	// TransitionAt is status.last_transition_at: when the machine entered Phase.
	TransitionAt time.Time `json:",omitzero"`
	// WasPhase and WasTransitionAt are the machine's state before the call:
	// WakeMachine and DeleteMachine read the machine first, so a wake tells
	// when a machine that autosleep put to sleep fell asleep. Empty for the
	// other calls.
	WasPhase        dedalus.MachinePhase `json:",omitempty"`
	WasTransitionAt time.Time            `json:",omitzero"`
}

func ref(m *dedalus.Machine) MachineRef {
	return MachineRef{MachineID: m.MachineID, Phase: m.Status.Phase, Revision: m.Status.Revision, TransitionAt: m.Status.LastTransitionAt}
}

// was records what the machine was before the call.
func (r MachineRef) was(before *dedalus.Machine) MachineRef {
	r.WasPhase, r.WasTransitionAt = before.Status.Phase, before.Status.LastTransitionAt
	return r
}

// CreateMachine creates a machine and waits until it runs. A retry after a
// crash sends the same idempotency key, so it finds the same machine instead
// of creating a second one.
func (a *Machines) CreateMachine(ctx context.Context, spec MachineSpec) (MachineRef, error) {
	if spec.VCPU <= 0 || spec.MemoryMiB <= 0 || spec.StorageGiB <= 0 {
		return MachineRef{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("machine size must be positive (vcpu %v, memory %d MiB, storage %d GiB)", spec.VCPU, spec.MemoryMiB, spec.StorageGiB),
			ErrTypeInvalidArgument, nil)
	}
	m, err := a.Client.CreateMachine(ctx, dedalus.CreateMachineRequest{
		VCPU: spec.VCPU, MemoryMiB: spec.MemoryMiB, StorageGiB: spec.StorageGiB, Autosleep: spec.Autosleep,
	}, idempotencyKey(ctx, "create"))
	if dedalus.IsQuotaExceeded(err) {
		return MachineRef{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeQuotaExceeded, nil)
	}
	if err != nil {
		return MachineRef{}, classify(err)
	}
	activity.RecordHeartbeat(ctx, m.MachineID)
	stop := a.heartbeatWhile(ctx, m.MachineID)
	defer stop()
	m, err = a.Client.WaitForPhase(ctx, m.MachineID, dedalus.PhaseRunning)
	if err != nil {
		return MachineRef{}, classify(err)
	}
	return ref(m), nil
}

// WakeMachine wakes a machine and waits until it runs; a running machine is
// returned at once without a wake call. It reads the machine first, and
// returns what it was (WasPhase, WasTransitionAt) with what it is: the read
// is the one the wake needs anyway, and tells the workflow when a machine
// that autosleep put to sleep fell asleep.
func (a *Machines) WakeMachine(ctx context.Context, machineID string) (MachineRef, error) {
	stop := a.heartbeatWhile(ctx, machineID)
	defer stop()
	before, err := a.Client.GetMachine(ctx, machineID)
	if err != nil {
		return MachineRef{}, classify(err)
	}
	if before.Status.Phase == dedalus.PhaseRunning && before.DesiredState == dedalus.DesiredRunning {
		return ref(before).was(before), nil
	}
	start := time.Now()
	// From the machine just read: the wake call goes out a round trip
	// sooner (every cold request of a sleeping preview waits for it).
	m, err := a.Client.WakeAndWaitFrom(ctx, before, idempotencyKey(ctx, "wake"))
	if err != nil {
		return MachineRef{}, classify(err)
	}
	if wt := activity.GetInfo(ctx).WorkflowType; wt != nil {
		a.Metrics.Woke(wt.Name, time.Since(start))
	}
	return ref(m).was(before), nil
}

// SleepMachine sleeps a machine and waits until it sleeps.
func (a *Machines) SleepMachine(ctx context.Context, machineID string) (MachineRef, error) {
	stop := a.heartbeatWhile(ctx, machineID)
	defer stop()
	m, err := a.Client.SleepAndWait(ctx, machineID, idempotencyKey(ctx, "sleep"))
	if err != nil {
		return MachineRef{}, classify(err)
	}
	return ref(m), nil
}

// DeleteMachine destroys a machine and waits until it is gone. A machine that
// does not exist (404) or is already destroyed counts as deleted. It reads
// the machine first and returns what it was (WasPhase, WasTransitionAt) and
// when it was destroyed; a machine that was already gone is returned
// destroyed with no times.
func (a *Machines) DeleteMachine(ctx context.Context, machineID string) (MachineRef, error) {
	gone := MachineRef{MachineID: machineID, Phase: dedalus.PhaseDestroyed}
	if machineID == "" {
		return MachineRef{}, nil
	}
	stop := a.heartbeatWhile(ctx, machineID)
	defer stop()
	before, err := a.Client.GetMachine(ctx, machineID)
	if dedalus.IsNotFound(err) {
		return gone, nil
	}
	if err != nil {
		return MachineRef{}, classify(err)
	}
	if before.Status.Phase == dedalus.PhaseDestroyed {
		return ref(before).was(before), nil
	}
	gone = gone.was(before)
	_, err = a.Client.DeleteMachine(ctx, machineID, dedalus.Mutation{IdempotencyKey: idempotencyKey(ctx, "delete")})
	if dedalus.IsNotFound(err) {
		return gone, nil
	}
	if err != nil {
		return MachineRef{}, classify(err)
	}
	m, err := a.Client.WaitForPhase(ctx, machineID, dedalus.PhaseDestroyed)
	if dedalus.IsNotFound(err) {
		return gone, nil
	}
	if err != nil {
		return MachineRef{}, classify(err)
	}
	return ref(m).was(before), nil
}

// Command is a command to run on a machine. Argv elements and Env values
// reach the process as they are: no shell interprets them unless Argv[0] is
// a shell, so untrusted data (branch names) belongs in Env, never in a
// shell script string.
type Command struct {
	MachineID string
	Name      string // what the step is, for errors and the UI (e.g. "build")
	Argv      []string
	Env       map[string]string
	Cwd       string
	Stdin     string
	Timeout   time.Duration
	// KeepOutput asks RunCommand for the output tails of a command that
	// succeeds. Set it wherever a successful command's output is read (the
	// app log of a failed preview): RunCommand carries output into workflow
	// history for failures only, and drops a success's output without it.
	KeepOutput bool `json:",omitempty"`
}

// CommandResult is a finished command's status and the tail of its output.
type CommandResult struct {
	// Name is the failed command's name, in a CommandFailed error's details
	// (RunCommands says which of its commands failed with it).
	Name        string `json:",omitempty"`
	ExecutionID string
	ExitCode    int64
	Succeeded   bool
	StdoutTail  string
	StderrTail  string
}

// outputTail bounds how much output a result carries into workflow history.
const outputTail = 8 << 10

// RunCommand runs a command to completion. Retries reuse the idempotency key,
// so a worker crash mid-command re-attaches to the same execution instead of
// starting it again. A non-zero exit is a non-retryable CommandFailed error
// carrying the CommandResult as details (with the output tail). A success
// returns no output unless cmd.KeepOutput: the result goes into workflow
// history, and only a failure's output is worth keeping there.
func (a *Machines) RunCommand(ctx context.Context, cmd Command) (CommandResult, error) {
	if cmd.MachineID == "" || len(cmd.Argv) == 0 || cmd.Argv[0] == "" {
		return CommandResult{}, temporal.NewNonRetryableApplicationError("command needs a machine ID and a non-empty argv", ErrTypeInvalidArgument, nil)
	}
	res, err := a.runCommand(ctx, cmd, "exec")
	if err == nil && !cmd.KeepOutput {
		res.StdoutTail, res.StderrTail = "", ""
	}
	return res, err
}

// workerStopping: this activity's worker is shutting down, which is why
// its context ends.
func workerStopping(ctx context.Context) bool {
	select {
	case <-activity.GetWorkerStopChannel(ctx):
		return true
	default:
		return false
	}
}

// runCommand runs cmd to completion with the idempotency key of this
// activity plus keySuffix: one activity can run several commands, and a
// retry re-attaches to each of them.
func (a *Machines) runCommand(ctx context.Context, cmd Command, keySuffix string) (CommandResult, error) {
	stop := a.heartbeatWhile(ctx, cmd.MachineID, cmd.Name)
	defer stop()
	ex, err := a.Client.CreateExecution(ctx, cmd.MachineID, dedalus.CreateExecutionRequest{
		Command: cmd.Argv, Env: cmd.Env, Cwd: cmd.Cwd, Stdin: cmd.Stdin, TimeoutMS: cmd.Timeout.Milliseconds(),
	}, idempotencyKey(ctx, keySuffix))
	if err != nil {
		return CommandResult{}, classify(err)
	}
	execID := ex.ExecutionID
	ex, err = a.Client.WaitExecution(ctx, cmd.MachineID, execID)
	if err != nil {
		if ctx.Err() != nil {
			if !workerStopping(ctx) {
				// Cancelled (a newer push superseded this deploy) or timed
				// out: stop the command too, so two builds never run at once.
				dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				_, _ = a.Client.DeleteExecution(dctx, cmd.MachineID, execID, idempotencyKey(ctx, keySuffix+":cancel"))
				cancel()
			}
			// A worker that stops (a rolling restart outlasting
			// WORKER_STOP_TIMEOUT) leaves the command running: the retry on
			// another worker re-attaches to it by its key and waits for it,
			// where a deleted command would fail the deploy.
			return CommandResult{}, ctx.Err()
		}
		return CommandResult{}, classify(err)
	}
	output, err := a.Client.ExecutionOutput(ctx, cmd.MachineID, execID)
	if err != nil {
		return CommandResult{}, classify(err)
	}
	res := &dedalus.ExecResult{Execution: ex, Output: output}
	out := CommandResult{
		ExecutionID: res.Execution.ExecutionID,
		Succeeded:   res.Execution.Status == dedalus.ExecSucceeded,
		StdoutTail:  dedalus.Tail(res.Output.Stdout, outputTail),
		StderrTail:  dedalus.Tail(res.Output.Stderr, outputTail),
	}
	if res.Execution.ExitCode != nil {
		out.ExitCode = *res.Execution.ExitCode
	}
	if xerr := res.Err(); xerr != nil {
		name := cmd.Name
		if name == "" {
			name = cmd.Argv[0]
		}
		out.Name = cmd.Name
		return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", name, xerr), ErrTypeCommandFailed, nil, out)
	}
	return out, nil
}

// PreviewRef is what workflows keep about a preview.
type PreviewRef struct {
	PreviewID string
	URL       string
}

// CreatePreview exposes a machine port with the given visibility
// (dedalus.Visibility*) and returns its URL. An empty visibility (a call
// scheduled by a workflow from before the setting) is private: fail closed.
func (a *Machines) CreatePreview(ctx context.Context, machineID string, port int64, visibility string) (PreviewRef, error) {
	switch visibility {
	case "":
		visibility = dedalus.VisibilityPrivate
	case dedalus.VisibilityPublic, dedalus.VisibilityOrg, dedalus.VisibilityPrivate:
	default:
		return PreviewRef{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("preview visibility %q must be public, org or private", visibility), ErrTypeInvalidArgument, nil)
	}
	stop := a.heartbeatWhile(ctx, machineID)
	defer stop()
	p, err := a.Client.CreatePreview(ctx, machineID, dedalus.CreatePreviewRequest{
		Port: port, Protocol: dedalus.ProtocolHTTP, Visibility: visibility,
	}, idempotencyKey(ctx, "preview"))
	if err != nil {
		return PreviewRef{}, classify(err)
	}
	return PreviewRef{PreviewID: p.PreviewID, URL: p.URL}, nil
}

// DeletePreview closes a preview; one that is already gone counts as closed.
func (a *Machines) DeletePreview(ctx context.Context, machineID, previewID string) error {
	if previewID == "" {
		return nil
	}
	stop := a.heartbeatWhile(ctx, machineID)
	defer stop()
	_, err := a.Client.DeletePreview(ctx, machineID, previewID, idempotencyKey(ctx, "delete-preview"))
	if dedalus.IsNotFound(err) {
		return nil
	}
	return classify(err)
}
