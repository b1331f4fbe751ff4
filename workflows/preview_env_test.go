package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/previewspec"
)

const evilBranch = "x$(touch /tmp/pwned)"

func prEvent(action, sha, delivery string) PullRequestEvent {
	return PullRequestEvent{
		DeliveryID: delivery, Action: action, Owner: "Codertocat", Repo: "Hello-World", Number: 2,
		HeadSHA: sha, HeadRef: evilBranch, BaseRef: "main", CloneURL: "https://github.com/Codertocat/Hello-World.git",
	}
}

// world records what the mocked activities were asked to do.
type world struct {
	mu        sync.Mutex
	commands  []activities.Command
	creates   int
	deletes   int
	previews  int
	wakes     int
	reports   []string // states of PR comments, in order
	reportLog []activities.CommentInput
	statuses  []string // deployment states, in order
	// statusDescs are the deployment statuses' descriptions, in order.
	statusDescs []string
	// createTakes and deleteTakes are how long CreateMachine and
	// DeleteMachine take (mocked time).
	createTakes, deleteTakes time.Duration
	// prClosed is what GitHub says when asked whether the PR is open;
	// prHead its head ("" = sha1) and prLabels its labels.
	prClosed bool
	prHead   string
	prLabels []string
	// removedLabels are the labels the workflow took off the PR.
	removedLabels []string
	// unhealthy makes the app's health check fail.
	unhealthy bool
	// createHook, if set, may fail a CreateMachine (counted in creates).
	createHook func() error
	// deploymentFails makes GitHub refuse to start deployments.
	deploymentFails bool
	// buildHook, if set, runs for every build step and may fail or block it.
	buildHook func(ctx context.Context, cmd activities.Command) (activities.CommandResult, error)
	// reportTakes and commandTakes are how long ReportOnPR and RunCommand take (mocked time).
	reportTakes  time.Duration
	commandTakes time.Duration
	// specVisibility is the visibility the spec asks for ("" = none).
	specVisibility string
	// previewVisibility is the visibility of each Dedalus preview created;
	// closedPreviews the IDs of those deleted.
	previewVisibility []string
	closedPreviews    []string
	// cancelled are the types of the activities the workflow cancelled,
	// in order, and cancelledIDs their IDs.
	cancelled, cancelledIDs []string
	// metrics, if set, receives the workflow's metrics.
	metrics *metricsCapture

	// The machine as Dedalus would answer: its phase and when it entered it.
	env     *testsuite.TestWorkflowEnvironment
	phase   dedalus.MachinePhase
	phaseAt time.Time
}

// moveTo puts the machine in phase now, as Dedalus would (mock time); it
// returns what the machine was and is. Callers hold w.mu.
func (w *world) moveTo(phase dedalus.MachinePhase) activities.MachineRef {
	ref := activities.MachineRef{MachineID: "dm-1", WasPhase: w.phase, WasTransitionAt: w.phaseAt}
	if phase != w.phase {
		w.phase, w.phaseAt = phase, w.env.Now()
	}
	ref.Phase, ref.TransitionAt = w.phase, w.phaseAt
	return ref
}

// autosleep puts the machine to sleep behind the workflow's back.
func (w *world) autosleep() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.moveTo(dedalus.PhaseSleeping)
}

func (w *world) names() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, c := range w.commands {
		out = append(out, c.Name)
	}
	return out
}

var testSpec = previewspec.Spec{
	Machine: previewspec.Machine{VCPU: 1, MemoryMiB: 1024, StorageGiB: 5, Autosleep: "10m"},
	App:     previewspec.App{Port: 3000, HealthPath: "/healthz", HealthTimeout: previewspec.Duration(time.Minute)},
	Env:     map[string]string{"GREETING": "hi"},
	Setup:   []previewspec.Step{{Name: "tools", Run: "true", Timeout: previewspec.Duration(time.Minute)}},
	Build:   []previewspec.Step{{Name: "compile", Command: []string{"make"}, Timeout: previewspec.Duration(time.Minute)}},
	Seed:    []previewspec.Step{{Name: "data", Run: "true", Timeout: previewspec.Duration(time.Minute)}},
	Start:   previewspec.Step{Command: []string{"./app"}},
}

func newTestEnv(t *testing.T, settings activities.PreviewSettings, configure ...func(*world)) (*testsuite.TestWorkflowEnvironment, *world) {
	w := &world{}
	for _, c := range configure {
		c(w)
	}
	env := newWorkflowEnv(w.metrics)
	w.env = env
	env.SetOnActivityCanceledListener(func(info *activity.Info) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.cancelled = append(w.cancelled, info.ActivityType.Name)
		w.cancelledIDs = append(w.cancelledIDs, info.ActivityID)
	})
	env.RegisterWorkflowWithOptions(PreviewLifecycle, workflow.RegisterOptions{Name: PreviewLifecycleName})
	env.RegisterActivity(&activities.Machines{})
	env.RegisterActivity(&activities.Previews{})
	env.RegisterActivity(&activities.GitHub{})
	env.OnActivity(previewActs.Settings, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(settings, nil)
	w.mockPullRequest(env)
	w.mockReports(env)
	w.mockMachine(env)
	w.mockExposure(env)
	w.mockDeletes(env)
	return env, w
}

// mockPullRequest mocks the pull request on GitHub (state, labels) and its preview spec.
func (w *world) mockPullRequest(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(githubActs.FetchPreviewSpec, mock.Anything, mock.Anything).Return(activities.FetchSpecResult{Skipped: true}, nil)
	env.OnActivity(githubActs.PullRequestState, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.PullRequestRef) (activities.PullRequestState, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			head := w.prHead
			if head == "" {
				head = "sha1"
			}
			return activities.PullRequestState{Known: true, Open: !w.prClosed, HeadSHA: head, Labels: slices.Clone(w.prLabels)}, nil
		})
	env.OnActivity(githubActs.RemoveLabel, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.LabelInput) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.removedLabels = append(w.removedLabels, in.Label)
			w.prLabels = slices.DeleteFunc(w.prLabels, func(l string) bool { return strings.EqualFold(l, in.Label) })
			return nil
		})
	env.OnActivity(previewActs.LoadSpec, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.LoadSpecInput) (previewspec.Spec, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			s := testSpec
			s.Visibility = w.specVisibility
			return s, nil
		})
}

// mockReports mocks what the preview tells GitHub: deployments, their statuses and PR comments.
func (w *world) mockReports(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(githubActs.StartDeployment, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.DeploymentInput) (activities.DeploymentRef, error) {
			if w.refusesDeployments() {
				return activities.DeploymentRef{}, temporal.NewNonRetryableApplicationError("403", activities.ErrTypeGitHubRejected, nil)
			}
			return activities.DeploymentRef{ID: 77}, nil
		})
	env.OnActivity(githubActs.SetDeploymentStatus, mock.Anything, mock.Anything).Return(w.setStatus)
	env.OnActivity(githubActs.ReportOnPR, mock.Anything, mock.Anything).Return(w.comment).After(w.reportTakes)
	env.OnActivity(githubActs.DeployReport, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.DeployReportInput) (activities.DeployReportResult, error) {
			var res activities.DeployReportResult
			switch {
			case in.Start != nil && w.refusesDeployments():
				res.Failed = append(res.Failed, "start the deployment: 403")
			case in.Start != nil:
				res.DeploymentID = 77
			}
			if in.Status != nil {
				_ = w.setStatus(ctx, *in.Status)
			}
			if in.Comment != nil {
				_ = w.comment(ctx, *in.Comment)
			}
			return res, nil
		}).After(w.reportTakes)
}

func (w *world) refusesDeployments() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.deploymentFails
}

func (w *world) setStatus(_ context.Context, in activities.DeploymentStatusInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.statuses = append(w.statuses, in.State)
	w.statusDescs = append(w.statusDescs, in.Description)
	return nil
}

func (w *world) comment(_ context.Context, in activities.CommentInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reports = append(w.reports, in.Report.State)
	w.reportLog = append(w.reportLog, in)
	return nil
}

// mockMachine mocks the machine: its creation, wakes and commands.
func (w *world) mockMachine(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(machineActs.CreateMachine, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.MachineSpec) (activities.MachineRef, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.creates++
			if w.createHook != nil {
				if err := w.createHook(); err != nil {
					return activities.MachineRef{}, err
				}
			}
			w.phase = ""
			ref := w.moveTo(dedalus.PhaseRunning)
			ref.WasPhase, ref.WasTransitionAt = "", time.Time{}
			return ref, nil
		}).After(w.createTakes)
	env.OnActivity(machineActs.WakeMachine, mock.Anything, mock.Anything).Return(
		func(context.Context, string) (activities.MachineRef, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.wakes++
			return w.moveTo(dedalus.PhaseRunning), nil
		})
	env.OnActivity(machineActs.RunCommand, mock.Anything, mock.Anything).Return(w.runCommand).After(w.commandTakes)
	// RunCommands runs its commands as RunCommand would, each in
	// commandTakes (mocked time: the mock's delay is the batch's).
	env.OnActivity(machineActs.RunCommands, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.CommandsInput) error {
			id := activity.GetInfo(ctx).ActivityID
			for _, cmd := range in.Commands {
				if w.wasCancelled(id) {
					return temporal.NewCanceledError() // no further command starts
				}
				cmd.MachineID, cmd.Env = in.MachineID, in.Env
				if _, err := w.runCommand(ctx, cmd); err != nil {
					return namedFailure(err, cmd.Name)
				}
			}
			return nil
		}).After(w.commandTakes)
}

// namedFailure names the command in a CommandFailed error's details, as
// RunCommands does.
func namedFailure(err error, name string) error {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeCommandFailed {
		return err
	}
	var res activities.CommandResult
	if ae.HasDetails() {
		_ = ae.Details(&res)
	}
	res.Name = name
	return temporal.NewNonRetryableApplicationError(ae.Message(), ae.Type(), nil, res)
}

// wasCancelled: the workflow cancelled the activity id. (The test
// environment does not cancel a mocked activity's context.)
func (w *world) wasCancelled(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.cancelledIDs, id)
}

// runCommand records cmd and runs the build hook on build steps.
func (w *world) runCommand(ctx context.Context, cmd activities.Command) (activities.CommandResult, error) {
	w.mu.Lock()
	w.commands = append(w.commands, cmd)
	hook := w.buildHook
	w.mu.Unlock()
	if hook != nil && strings.HasPrefix(cmd.Name, "build") {
		return hook(ctx, cmd)
	}
	if cmd.Name == "app log" {
		return activities.CommandResult{Succeeded: true, StdoutTail: "GET http://169.254.169.254/latest/meta-data/ -> AKIA-SECRET"}, nil
	}
	return activities.CommandResult{Succeeded: true}, nil
}

// mockExposure mocks the Dedalus preview and the app's health check.
func (w *world) mockExposure(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(machineActs.CreatePreview, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ string, _ int64, visibility string) (activities.PreviewRef, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.previews++
			w.previewVisibility = append(w.previewVisibility, visibility)
			return activities.PreviewRef{PreviewID: fmt.Sprintf("pv-%d", w.previews), URL: fmt.Sprintf("http://127.0.0.1:%d", 10000-w.previews)}, nil
		})
	env.OnActivity(previewActs.WaitHealthy, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.HealthInput) error {
			if w.unhealthy {
				// What WaitHealthy says: the URL and the app's last answer.
				return temporal.NewNonRetryableApplicationError(
					"the app did not answer http://10.1.2.3:8080/healthz within 1m (last: 500 Internal Server Error: db password is hunter2)",
					activities.ErrTypeAppUnhealthy, nil)
			}
			return nil
		})
}

// mockDeletes mocks the deletes of the preview and the machine.
func (w *world) mockDeletes(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(machineActs.DeletePreview, mock.Anything, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _, previewID string) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.closedPreviews = append(w.closedPreviews, previewID)
			return nil
		})
	env.OnActivity(machineActs.DeleteMachine, mock.Anything, mock.Anything).Return(
		func(context.Context, string) (activities.MachineRef, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.deletes++
			return w.moveTo(dedalus.PhaseDestroyed), nil
		}).After(w.deleteTakes)
}

var defaultSettings = activities.PreviewSettings{PublicURL: "http://pr-2.preview.localhost:8090", KeepFailedMachine: true}

func status(t *testing.T, env *testsuite.TestWorkflowEnvironment) PreviewStatus {
	t.Helper()
	v, err := env.QueryWorkflow(QueryStatus)
	require.NoError(t, err)
	var st PreviewStatus
	require.NoError(t, v.Get(&st))
	return st
}

func start(env *testsuite.TestWorkflowEnvironment) {
	env.ExecuteWorkflow(PreviewLifecycleName, PreviewInput{Owner: "Codertocat", Repo: "Hello-World", Number: 2})
}
