package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/temporal"
)

// CommandsInput is a sequence of commands to run one after the other on a
// machine, with one environment: the commands of a deploy that need no
// decision between them (checkout, build, start).
type CommandsInput struct {
	MachineID string
	Env       map[string]string
	// Commands run in order; their MachineID and Env are the input's.
	Commands []Command
}

// RunCommands runs in.Commands in order, each to completion, and stops at
// the first that fails. It is one activity where RunCommand would be one per
// command: a deploy's commands cost one activity task and one workflow task
// between them instead of one each. A failed command is the same
// non-retryable CommandFailed error RunCommand returns, its CommandResult
// details naming the command (Name). Each command has its own idempotency
// key (the activity's plus its position), so a retry after a worker crash
// re-attaches to the commands already run or running instead of starting
// them again.
func (a *Machines) RunCommands(ctx context.Context, in CommandsInput) error {
	if in.MachineID == "" || len(in.Commands) == 0 {
		return temporal.NewNonRetryableApplicationError("commands need a machine ID and at least one command", ErrTypeInvalidArgument, nil)
	}
	for i, cmd := range in.Commands {
		if len(cmd.Argv) == 0 || cmd.Argv[0] == "" {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("command %d (%s) has an empty argv", i, cmd.Name), ErrTypeInvalidArgument, nil)
		}
	}
	for i, cmd := range in.Commands {
		cmd.MachineID, cmd.Env = in.MachineID, in.Env
		if _, err := a.runCommand(ctx, cmd, fmt.Sprintf("exec:%d", i)); err != nil {
			return err
		}
	}
	return nil
}
