package dedalus_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/emulator"
)

// Executions, in order on one machine: untrusted input, failures and
// limits, the event log and listing, and deletion of a running one.
func TestExecutions(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *emulator.Config) { c.OutputCap = 1000 }})
	ctx := ctxT(t)
	m := e.running(t, "exec", small)
	id := checkExecutionInput(ctx, t, e, m.MachineID)
	checkExecutionFailures(ctx, t, e, m.MachineID)
	checkExecutionEvents(ctx, t, e, m.MachineID, id)

	// Deleting a running execution cancels it; then it is gone.
	long, err := e.c.CreateExecution(ctx, m.MachineID, dedalus.CreateExecutionRequest{Command: []string{"sleep", "30"}}, "exec-long")
	require.NoError(t, err)
	del, err := e.c.DeleteExecution(ctx, m.MachineID, long.ExecutionID, "del-long")
	require.NoError(t, err)
	assert.Equal(t, dedalus.ExecCancelled, del.Status)
	_, err = e.c.GetExecution(ctx, m.MachineID, long.ExecutionID)
	assert.True(t, dedalus.IsNotFound(err))
}

// checkExecutionInput runs a command fed untrusted env, argv and stdin, and
// the same request again under its key; it returns the execution's ID.
func checkExecutionInput(ctx context.Context, t *testing.T, e *env, machineID string) string {
	t.Helper()
	// Untrusted data travels in env and argv, never through a shell string.
	evil := "x$(touch /tmp/drydock-pwned-by-client-test)"
	os.Remove("/tmp/drydock-pwned-by-client-test")
	mk, err := e.c.RunCommand(ctx, machineID, dedalus.CreateExecutionRequest{Command: []string{"mkdir", "-p", "../work"}}, "mkdir")
	require.NoError(t, err)
	require.NoError(t, mk.Err())
	res, err := e.c.RunCommand(ctx, machineID, dedalus.CreateExecutionRequest{
		Command: []string{"sh", "-c", `printf '%s|%s|' "$BRANCH" "$1"; cat; pwd`, "sh", evil},
		Env:     map[string]string{"BRANCH": evil},
		Stdin:   "from-stdin|",
		Cwd:     "/work",
	}, "exec-1")
	require.NoError(t, err)
	require.NoError(t, res.Err())
	assert.True(t, strings.HasPrefix(res.Output.Stdout, evil+"|"+evil+"|from-stdin|"), res.Output.Stdout)
	assert.True(t, strings.HasSuffix(strings.TrimSpace(res.Output.Stdout), "/work"), res.Output.Stdout)
	assert.NoFileExists(t, "/tmp/drydock-pwned-by-client-test")
	assert.Equal(t, []string{"BRANCH"}, res.Execution.EnvKeys, "env keys, never values, are reported")

	// Same key again: the same execution, not a second run.
	again, err := e.c.CreateExecution(ctx, machineID, dedalus.CreateExecutionRequest{
		Command: []string{"sh", "-c", `printf '%s|%s|' "$BRANCH" "$1"; cat; pwd`, "sh", evil},
		Env:     map[string]string{"BRANCH": evil}, Stdin: "from-stdin|", Cwd: "/work",
	}, "exec-1")
	require.NoError(t, err)
	assert.Equal(t, res.Execution.ExecutionID, again.ExecutionID)
	return again.ExecutionID
}

// checkExecutionFailures runs a failing command, one whose output exceeds
// the cap (1000 bytes) and one that times out.
func checkExecutionFailures(ctx context.Context, t *testing.T, e *env, machineID string) {
	t.Helper()
	// A failing command: not a Go error, but ExitError with the output tail.
	res, err := e.c.RunCommand(ctx, machineID, dedalus.CreateExecutionRequest{
		Command: []string{"sh", "-c", "echo doing things; echo it broke >&2; exit 3"},
	}, "exec-fail")
	require.NoError(t, err)
	var xe *dedalus.ExitError
	require.True(t, errors.As(res.Err(), &xe))
	assert.EqualValues(t, 3, *xe.ExitCode)
	assert.Equal(t, dedalus.ExecFailed, xe.Status)
	assert.Contains(t, xe.StderrTail, "it broke")

	// Output beyond the cap is truncated and flagged; bytes counts everything.
	res, err = e.c.RunCommand(ctx, machineID, dedalus.CreateExecutionRequest{
		Command: []string{"sh", "-c", "yes drydock | head -c 5000"},
	}, "exec-big")
	require.NoError(t, err)
	assert.True(t, res.Output.StdoutTruncated)
	assert.EqualValues(t, 5000, res.Output.StdoutBytes)
	assert.Len(t, res.Output.Stdout, 1000)

	// Timeout.
	res, err = e.c.RunCommand(ctx, machineID, dedalus.CreateExecutionRequest{
		Command: []string{"sleep", "30"}, TimeoutMS: 200,
	}, "exec-timeout")
	require.NoError(t, err)
	assert.Equal(t, dedalus.ExecFailed, res.Execution.Status)
	assert.NotEmpty(t, res.Execution.ErrorCode)

}

// checkExecutionEvents reads execution id's events, all and by page, and
// lists the machine's five executions so far.
func checkExecutionEvents(ctx context.Context, t *testing.T, e *env, machineID, id string) {
	t.Helper()
	// Events: lifecycle and output, in sequence, across pages.
	var seqs []int64
	var sawStdout, sawDone bool
	for ev, err := range e.c.AllExecutionEvents(ctx, machineID, id) {
		require.NoError(t, err)
		seqs = append(seqs, ev.Sequence)
		sawStdout = sawStdout || ev.Type == dedalus.EventStdout
		sawDone = sawDone || (ev.Type == dedalus.EventLifecycle && ev.Status == dedalus.ExecSucceeded)
	}
	assert.True(t, sawStdout && sawDone)
	for i := 1; i < len(seqs); i++ {
		assert.Greater(t, seqs[i], seqs[i-1])
	}
	page, err := e.c.ListExecutionEvents(ctx, machineID, id, dedalus.ListOptions{Limit: 1})
	require.NoError(t, err)
	assert.Len(t, page.Items, 1)
	assert.NotEmpty(t, page.NextCursor)

	list, err := e.c.ListExecutions(ctx, machineID, dedalus.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 5)
}
