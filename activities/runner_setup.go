package activities

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
)

// SetupMachineInput names a freshly provisioned pool machine.
type SetupMachineInput struct {
	Pool, MachineID string
	// Config is the pool configuration the machine was created with (its
	// size came from it): setup follows it, not the worker's configuration,
	// so a RUNNER_POOLS change during a provisioning never gives a machine
	// one configuration's size and another's setup. Nil (workflows started
	// before it was added): the worker's configuration of Pool.
	Config *pools.Pool `json:",omitempty"`
}

// SetupMachine prepares a pool machine, as root: it runs the pool's Setup
// steps, creates the unprivileged RunnerUser (unless a setup step did),
// runs its Install step (default: download actions/runner RunnerVersion
// into root's $HOME/actions-runner, the pristine install every runner gets
// a fresh copy of), with DRYDOCK_POOL and DRYDOCK_RUNNER_VERSION set, makes
// the install root's and read-only to others, and then writes $HOME/.drydock/runner-<version>.installed. A machine that
// has the marker is done: a later call runs nothing (changing RunnerVersion
// therefore re-runs setup and install). A failing step is a non-retryable
// CommandFailed error carrying its output tail. Each command has its own
// idempotency key, so a retry after a worker crash re-attaches to the
// commands already started instead of running them twice.
func (a *Runners) SetupMachine(ctx context.Context, in SetupMachineInput) error {
	p, err := a.poolAsCreated(in.Pool, in.Config)
	if err != nil {
		return err
	}
	if err := a.machine(in.MachineID); err != nil {
		return err
	}
	version, err := runnerVersion(p)
	if err != nil {
		return err
	}
	env := map[string]string{"DRYDOCK_POOL": p.Name, "DRYDOCK_RUNNER_VERSION": version, "DRYDOCK_RUNNER_USER": RunnerUser}
	log := a.logger().With("pool", p.Name, "machine_id", in.MachineID, "runner_version", version)

	check, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: "check runner install", Argv: []string{"sh", "-c", checkInstallScript}, Env: env, Timeout: time.Minute,
	}, "setup:check")
	if err != nil {
		return err
	}
	if strings.TrimSpace(check.StdoutTail) == "installed" {
		log.InfoContext(ctx, "runner machine already set up")
		return nil
	}
	if err := a.runSetupSteps(ctx, p, in.MachineID, env); err != nil {
		return err
	}
	if _, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: "create the runner user " + RunnerUser, Argv: []string{"sh", "-c", createRunnerUserScript}, Env: env, Timeout: time.Minute,
	}, "setup:user"); err != nil {
		return err
	}
	install := installStep(p, version)
	if _, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: install.Name, Argv: install.Argv(), Env: env, Timeout: stepTimeout(install),
	}, "setup:install"); err != nil {
		return err
	}
	if _, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: "mark runner installed", Argv: []string{"sh", "-c", markInstalledScript}, Env: env, Timeout: time.Minute,
	}, "setup:mark"); err != nil {
		return err
	}
	log.InfoContext(ctx, "runner machine set up", "setup_steps", len(p.Setup))
	return nil
}

// runSetupSteps runs the pool's Setup steps on the machine, in order, each
// with an idempotency key of its own.
func (a *Runners) runSetupSteps(ctx context.Context, p *pools.Pool, machineID string, env map[string]string) error {
	for i, st := range p.Setup {
		name := st.Name
		if name == "" {
			name = "setup step " + strconv.Itoa(i+1)
		}
		if _, err := a.run(ctx, Command{
			MachineID: machineID, Name: "setup: " + name, Argv: st.Argv(), Env: env, Timeout: stepTimeout(st),
		}, "setup:step:"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return nil
}

// installStep is the pool's Install step, named "install runner" when it
// has no name; default: download actions/runner version.
func installStep(p *pools.Pool, version string) previewspec.Step {
	if p.Install == nil {
		return previewspec.Step{Name: "install actions/runner " + version, Run: defaultInstallScript, Timeout: previewspec.Duration(10 * time.Minute)}
	}
	install := *p.Install
	if install.Name == "" {
		install.Name = "install runner"
	}
	return install
}

// RegisterInput names the persistent runner to register on a machine.
type RegisterInput struct {
	Pool, MachineID, RunnerName string
	// Config is the pool configuration the machine was created with (see
	// SetupMachineInput.Config).
	Config *pools.Pool `json:",omitempty"`
}

// RegisterPersistent registers a persistent runner (pool mode persistent):
// it asks GitHub for a registration token, runs config.sh --unattended
// --replace once as RunnerUser, in a copy of the install in its home (a
// machine whose runner is configured skips it), and installs the runner's
// systemd service for RunnerUser (svc.sh install runner) and starts it, so
// the runner resumes polling on every wake. The token reaches config.sh as its
// environment input ACTIONS_RUNNER_INPUT_TOKEN, through the environment of a
// constant script: it is in no argv (config.sh's included), log, error or
// result, and the script unsets it before it starts the service. Each
// attempt runs its own execution (a fresh token means a different request);
// the script serializes attempts with flock. It also installs the
// cleanup after every job (persistentHookScript, the runner's
// job-completed hook), which keeps only the pool's caches.
func (a *Runners) RegisterPersistent(ctx context.Context, in RegisterInput) error {
	p, err := a.poolAsCreated(in.Pool, in.Config)
	if err != nil {
		return err
	}
	if err := a.machine(in.MachineID); err != nil {
		return err
	}
	if err := checkRunnerName(in.RunnerName); err != nil {
		return err
	}
	caches, err := cacheList(p)
	if err != nil {
		return err
	}
	api, err := a.api(0)
	if err != nil {
		return err
	}
	url, err := a.GitHub.RunnerURL(p.Scope)
	if err != nil {
		return classifyGitHub(err)
	}
	token, _, err := api.RegistrationToken(ctx, p.Scope)
	if err != nil {
		return classifyGitHub(err)
	}
	attempt := int32(1)
	if activity.IsActivity(ctx) {
		attempt = activity.GetInfo(ctx).Attempt
	}
	if _, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: "register runner " + in.RunnerName, Argv: []string{"sh", "-c", registerScript, "drydock-register", cleanScript},
		Env: map[string]string{
			"DRYDOCK_POOL": p.Name, "DRYDOCK_RUNNER_NAME": in.RunnerName, "DRYDOCK_RUNNER_URL": url,
			"DRYDOCK_RUNNER_LABELS": strings.Join(p.Labels, ","), registrationTokenEnv: token,
			"DRYDOCK_RUNNER_USER": RunnerUser, "DRYDOCK_CACHES": caches, "DRYDOCK_HOOK_SCRIPT": persistentHookScript,
		},
		Timeout: 5 * time.Minute,
	}, fmt.Sprintf("register:%d", attempt)); err != nil {
		return err
	}
	a.logger().InfoContext(ctx, "persistent runner registered", "pool", p.Name, "machine_id", in.MachineID, "runner", in.RunnerName)
	return nil
}
