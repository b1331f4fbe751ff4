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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/gh"
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
	var s testsuite.WorkflowTestSuite
	if w.metrics != nil {
		s.SetMetricsHandler(w.metrics)
	}
	env := s.NewTestWorkflowEnvironment()
	w.env = env
	env.RegisterWorkflowWithOptions(PreviewLifecycle, workflow.RegisterOptions{Name: PreviewLifecycleName})
	env.RegisterActivity(&activities.Machines{})
	env.RegisterActivity(&activities.Previews{})
	env.RegisterActivity(&activities.GitHub{})
	env.OnActivity(previewActs.Settings, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(settings, nil)
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
	env.OnActivity(githubActs.StartDeployment, mock.Anything, mock.Anything).Return(activities.DeploymentRef{ID: 77}, nil)
	env.OnActivity(githubActs.SetDeploymentStatus, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeploymentStatusInput) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.statuses = append(w.statuses, in.State)
			w.statusDescs = append(w.statusDescs, in.Description)
			return nil
		})
	env.OnActivity(githubActs.ReportOnPR, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.CommentInput) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.reports = append(w.reports, in.Report.State)
			w.reportLog = append(w.reportLog, in)
			return nil
		}).After(w.reportTakes)
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
	env.OnActivity(machineActs.RunCommand, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, cmd activities.Command) (activities.CommandResult, error) {
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
		}).After(w.commandTakes)
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
	return env, w
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

func TestPreviewDeploysThenTearsDownOnClose(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha1", st.DeployedSHA)
		assert.Equal(t, "dm-1", st.MachineID)
		assert.Equal(t, "http://127.0.0.1:9999", st.URL)
		// A redelivered webhook changes nothing.
		env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1"))
	}, time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2")) }, 2*time.Minute)
	start(env)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1", "setup[0] tools", "build[0] compile", "seed[0] data", "start app"}, w.names())
	assert.Equal(t, 1, w.creates)
	assert.Equal(t, 1, w.previews)
	assert.Equal(t, 1, w.deletes, "the machine is deleted on close")
	assert.Equal(t, []string{"deploying", "ready", "destroyed"}, w.reports)
	assert.Equal(t, []string{"success", "inactive"}, w.statuses)
	assert.Contains(t, w.reportLog[2].Report.Note, "pull request closed")

	// PR data reaches commands only as environment variables.
	for _, c := range w.commands {
		assert.Equal(t, evilBranch, c.Env["DRYDOCK_BRANCH"])
		assert.Equal(t, "sha1", c.Env["DRYDOCK_SHA"])
		assert.Equal(t, "hi", c.Env["GREETING"])
		for _, a := range c.Argv {
			assert.NotContains(t, a, evilBranch, "untrusted data is never part of a command")
		}
	}
}

// GitHub does not promise delivery order: an opened delivery that arrives
// after the pull request closed (its closed delivery found no workflow)
// must not create a machine.
func TestOpenedArrivingAfterCloseCreatesNothing(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.prClosed = true
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	start(env)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Zero(t, w.creates, "no machine for a closed pull request")
	assert.Empty(t, w.names())
	assert.Empty(t, w.reports, "nothing is said on a closed pull request")
	assert.Empty(t, w.statuses)
}

// A close while the machine is being created must not cancel the create
// half-way (Dedalus may have made the machine already): the create finishes,
// and the teardown deletes the machine it returned.
func TestCloseDuringCreateDeletesTheMachine(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.createTakes = time.Minute })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2")) }, 10*time.Second)
	start(env)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 1, w.creates)
	assert.Equal(t, 1, w.deletes, "the machine whose create was in flight is deleted")
	assert.Empty(t, w.names(), "nothing runs on it")
}

func TestNewerPushSupersedesInFlightDeploy(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	var cancelledBuilds []string
	env.SetOnActivityCanceledListener(func(info *activity.Info) {
		cancelledBuilds = append(cancelledBuilds, info.ActivityType.Name)
	})
	w.buildHook = func(ctx context.Context, cmd activities.Command) (activities.CommandResult, error) {
		if cmd.Env["DRYDOCK_SHA"] != "sha1" {
			return activities.CommandResult{Succeeded: true}, nil
		}
		// While sha1 builds, sha2 is pushed. (The test environment resolves
		// the cancelled activity at once; its result is then discarded.)
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha2", "d2"))
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha2", st.DeployedSHA)
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"})
	}, time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"RunCommand"}, cancelledBuilds, "the sha1 build was cancelled")
	assert.Equal(t, []string{"checkout sha1", "setup[0] tools", "build[0] compile",
		"checkout sha2", "build[0] compile", "seed[0] data", "start app"}, w.names(),
		"setup is not repeated; the app starts once, on sha2")
	assert.Equal(t, 1, w.creates)
	assert.Equal(t, []string{"deploying", "deploying", "ready", "destroyed"}, w.reports)
}

// A push back to the deployed head while a redeploy runs (a revert, a
// force-push) cancels the redeploy, which may have checked out and built
// the other head already: the deployed head is deployed again in full.
func TestPushBackToDeployedHeadRedeploysIt(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.buildHook = func(ctx context.Context, cmd activities.Command) (activities.CommandResult, error) {
		if cmd.Env["DRYDOCK_SHA"] == "sha2" {
			env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha1", "d3"))
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha2", "d2")) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase, "not left in deploying")
		assert.Equal(t, "sha1", st.DeployedSHA)
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"})
	}, time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1", "setup[0] tools", "build[0] compile", "seed[0] data", "start app",
		"checkout sha2", "build[0] compile",
		"checkout sha1", "build[0] compile", "start app"}, w.names(), "sha1 is checked out, built and started again")
}

func TestFailedStepIsReportedAndNotRetried(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	builds := 0
	w.buildHook = func(_ context.Context, cmd activities.Command) (activities.CommandResult, error) {
		builds++
		if cmd.Env["DRYDOCK_SHA"] == "bad" {
			res := activities.CommandResult{ExitCode: 2, StderrTail: "main.go:3: syntax error"}
			return res, temporal.NewNonRetryableApplicationError("build[0] compile: exit 2", activities.ErrTypeCommandFailed, nil, res)
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "bad", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewFailed, st.Phase)
		assert.Contains(t, st.LastError, "exit 2")
		assert.Equal(t, "dm-1", st.MachineID, "kept for debugging")
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "good", "d2"))
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewReady, status(t, env).Phase)
		env.SignalWorkflow(SignalPullRequest, prEvent("closed", "good", "d3"))
	}, 2*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 2, builds, "the failed build ran once, the fixed one once")
	assert.Equal(t, 1, w.creates, "the failed machine was reused")
	assert.Equal(t, []string{"deploying", "failed", "deploying", "ready", "destroyed"}, w.reports)
	failed := w.reportLog[1].Report
	assert.Equal(t, "build[0] compile", failed.FailedStep)
	assert.Equal(t, "the step failed (exit code 2)", failed.Error)
	assert.Empty(t, failed.OutputTail, "the step's output stays in the workflow")
	assert.NotContains(t, gh.RenderComment(failed), "syntax error")
	assert.Contains(t, failed.Note, "kept for debugging")
	assert.Equal(t, []string{"failure", "success", "inactive"}, w.statuses)
}

func TestFailedMachineDeletedWhenNotKept(t *testing.T) {
	settings := defaultSettings
	settings.KeepFailedMachine = false
	env, w := newTestEnv(t, settings)
	w.buildHook = func(context.Context, activities.Command) (activities.CommandResult, error) {
		return activities.CommandResult{}, temporal.NewNonRetryableApplicationError("exit 1", activities.ErrTypeCommandFailed, nil)
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "bad", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewFailed, st.Phase)
		assert.Empty(t, st.MachineID)
		env.SignalWorkflow(SignalDestroy, DestroyRequest{})
	}, time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 1, w.deletes)
}

func TestStalePreviewIsTornDown(t *testing.T) {
	settings := defaultSettings
	settings.StaleAfter = 24 * time.Hour
	env, w := newTestEnv(t, settings)
	var begin time.Time
	env.RegisterDelayedCallback(func() {
		begin = env.Now()
		env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1"))
	}, 0)
	// Traffic at 20h keeps it alive until 44h.
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalTouch, nil) }, 20*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	lived := env.Now().Sub(begin)
	assert.GreaterOrEqual(t, lived, 44*time.Hour)
	assert.Less(t, lived, 46*time.Hour)
	assert.Equal(t, 1, w.deletes)
	require.NotEmpty(t, w.reportLog)
	last := w.reportLog[len(w.reportLog)-1].Report
	assert.Equal(t, "destroyed", last.State)
	assert.Contains(t, last.Note, "stale")
}

func TestConcurrentWakesCoalesce(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	results := make(chan WakeResult, 10)
	errs := make(chan error, 10)
	cb := func() *testsuite.TestUpdateCallback {
		return &testsuite.TestUpdateCallback{
			OnReject: func(err error) { errs <- err },
			OnAccept: func() {},
			OnComplete: func(v any, err error) {
				if err != nil {
					errs <- err
					return
				}
				results <- v.(WakeResult)
			},
		}
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		for i := range 5 {
			env.UpdateWorkflow(UpdateWake, "wake-"+string(rune('a'+i)), cb())
		}
	}, time.Hour)
	env.RegisterDelayedCallback(func() { env.UpdateWorkflow(UpdateWake, "wake-soon-after", cb()) }, time.Hour+time.Second)
	env.RegisterDelayedCallback(func() { env.UpdateWorkflow(UpdateWake, "wake-later", cb()) }, 2*time.Hour)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "done"})
		env.UpdateWorkflow(UpdateWake, "wake-too-late", cb())
	}, 3*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	close(results)
	close(errs)
	n := 0
	for r := range results {
		n++
		assert.Equal(t, "http://127.0.0.1:9999", r.URL)
	}
	assert.Equal(t, 7, n)
	assert.Equal(t, 2, w.wakes, "five concurrent wakes and one a second later made one call; an hour later, a second")
	var rejected []error
	for err := range errs {
		rejected = append(rejected, err)
	}
	require.Len(t, rejected, 1)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(rejected[0], &ae))
	assert.Equal(t, ErrTypePreviewTornDown, ae.Type())
}

func TestContinueAsNewCarriesState(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SetContinueAsNewSuggested(true) }, time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalTouch, nil) }, time.Hour+time.Second)
	start(env)
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "%v", err)
	assert.Equal(t, PreviewLifecycleName, can.WorkflowType.Name)
	var next PreviewInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.Carry)
	assert.Equal(t, "sha1", next.Carry.Status.DeployedSHA)
	assert.Equal(t, "dm-1", next.Carry.Status.MachineID)
	assert.True(t, next.Carry.SetupDone)
	assert.Equal(t, []string{"d1"}, next.Carry.SeenDeliveries)
	assert.Equal(t, 1, w.creates)
	assert.True(t, next.Carry.Awake.Awake(), "the running machine's awake interval is carried")
	assert.False(t, next.Carry.ReportedAt.IsZero())

	// The next run picks up where this one stopped: a carried push deploys
	// on the same machine without setup or seed, and no new machine.
	env2, w2 := newTestEnv(t, defaultSettings)
	next.Carry.Pending = []PullRequestEvent{prEvent("synchronize", "sha2", "d2"), prEvent("synchronize", "sha1", "d1")}
	env2.RegisterDelayedCallback(func() {
		st := status(t, env2)
		assert.Equal(t, "sha2", st.DeployedSHA)
		env2.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha2", "d3"))
	}, time.Hour)
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.NoError(t, env2.GetWorkflowError())
	assert.Equal(t, 0, w2.creates)
	assert.Equal(t, []string{"checkout sha2", "build[0] compile", "start app"}, w2.names())
	assert.Equal(t, 1, w2.deletes)
}

// Awake time is accounted from the machine states the workflow observes:
// the create opens an interval, a wake that finds the machine asleep closes
// it where autosleep put it to sleep (and refreshes the PR comment, without
// holding up the wake, at most once per awakeReportEvery), the teardown
// reports the total. The counter carries the fractions of seconds.
func TestPreviewAwakeTimeAccounting(t *testing.T) {
	m := newMetricsCapture()
	env, w := newTestEnv(t, defaultSettings, func(w *world) {
		w.metrics = m
		w.reportTakes = 30 * time.Second
	})
	var begin time.Time
	var wakeDone []time.Duration // when each wake completed, from begin
	wake := func(id string) {
		env.UpdateWorkflow(UpdateWake, id, &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("wake %s rejected: %v", id, err) },
			OnAccept: func() {},
			OnComplete: func(_ any, err error) {
				assert.NoError(t, err)
				wakeDone = append(wakeDone, env.Now().Sub(begin))
			},
		})
	}
	env.RegisterDelayedCallback(func() {
		begin = env.Now()
		env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1"))
	}, 0)
	// The deploy's first report takes 30s: the machine runs from 30s.
	env.RegisterDelayedCallback(w.autosleep, 10*time.Minute+30*time.Second+500*time.Millisecond)
	env.RegisterDelayedCallback(func() { wake("w1") }, time.Hour)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.InDelta(t, (10*time.Minute + 500*time.Millisecond + time.Minute).Seconds(), st.AwakeSeconds, 1e-6,
			"10m0.5s before autosleep, and a minute since the wake")
		assert.True(t, st.AwakeSince.Equal(begin.Add(time.Hour)), "%v", st.AwakeSince)
		assert.True(t, st.AwakeAsOf.Equal(begin.Add(time.Hour+time.Minute)), "%v", st.AwakeAsOf)
		assert.Equal(t, []int64{600}, counts(m.named(MetricPreviewAwake)), "whole seconds; the half waits")
	}, time.Hour+time.Minute)
	env.RegisterDelayedCallback(w.autosleep, time.Hour+5*time.Minute+700*time.Millisecond)
	env.RegisterDelayedCallback(func() { wake("w2") }, time.Hour+6*time.Minute)
	// Asleep at teardown: the delete reads the machine first, so the last
	// interval closes where autosleep put it to sleep.
	env.RegisterDelayedCallback(w.autosleep, time.Hour+10*time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2")) }, 2*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())

	assert.Equal(t, []time.Duration{time.Hour, time.Hour + 6*time.Minute}, wakeDone, "wakes do not wait for the PR comment")
	assert.Equal(t, []string{"deploying", "ready", "ready", "destroyed"}, w.reports,
		"the first wake refreshed the comment; the second, six minutes later, did not")
	var awake []time.Duration
	for _, r := range w.reportLog {
		awake = append(awake, r.Report.AwakeFor)
	}
	total := 19*time.Minute + 1200*time.Millisecond
	assert.Equal(t, []time.Duration{0, 0, 10*time.Minute + 500*time.Millisecond, total}, awake)
	assert.True(t, w.reportLog[2].Report.UpdatedAt.Equal(begin.Add(time.Hour)), "the refresh was sent with the wake")

	assert.Equal(t, []int64{600, 301, 240}, counts(m.named(MetricPreviewAwake)), "600.5s, 901.2s, 1141.2s: the fraction carried, never lost")
	assert.Equal(t, int64(total/time.Second), m.sum(MetricPreviewAwake))
	for _, e := range m.named(MetricPreviewAwake) {
		assert.Equal(t, "counter", e.kind)
		assert.Equal(t, "codertocat/hello-world", e.tags["repo"])
		assert.Equal(t, "2", e.tags["pr"])
	}
	assert.Len(t, m.tagKeys(MetricPreviewAwake), 1, "one tag key set per metric name")
}

// A failed deploy's deleted machine counts, and so does the next one.
func TestPreviewAwakeTimeSpansMachines(t *testing.T) {
	settings := defaultSettings
	settings.KeepFailedMachine = false
	m := newMetricsCapture()
	env, w := newTestEnv(t, settings, func(w *world) {
		w.metrics = m
		w.commandTakes = 30 * time.Second
	})
	w.buildHook = func(_ context.Context, cmd activities.Command) (activities.CommandResult, error) {
		if cmd.Env["DRYDOCK_SHA"] == "bad" {
			return activities.CommandResult{}, temporal.NewNonRetryableApplicationError("exit 1", activities.ErrTypeCommandFailed, nil)
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "bad", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewFailed, st.Phase)
		assert.Equal(t, 90.0, st.AwakeSeconds, "checkout, setup and build ran 30s each; then the machine was deleted")
		assert.True(t, st.AwakeSince.IsZero())
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "good", "d2"))
	}, time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDestroy, DestroyRequest{}) }, 2*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 2, w.creates)
	last := w.reportLog[len(w.reportLog)-1].Report
	assert.Equal(t, "destroyed", last.State)
	// The second machine: created at 1h, ready after five 30s commands, deleted at 2h.
	assert.Equal(t, 90*time.Second+time.Hour, last.AwakeFor)
	assert.Equal(t, int64(3690), m.sum(MetricPreviewAwake))
	assert.Equal(t, int64(1), m.sum(MetricPreviewFailures), "one failed deploy, then a good one")
	for _, e := range m.named(MetricPreviewFailures) {
		assert.Equal(t, "codertocat/hello-world", e.tags["repo"])
	}
}

func counts(es []emission) []int64 {
	var out []int64
	for _, e := range es {
		out = append(out, e.count)
	}
	return out
}

// PREVIEW_AWAKE_REPORT_EVERY reaches the workflow through its settings: a
// short interval refreshes the comment on both wakes; "never" (negative)
// on neither; zero (settings recorded before the option) is the default.
func TestPreviewAwakeReportInterval(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every time.Duration
		want  []string
	}{
		{"short", time.Minute, []string{"deploying", "ready", "ready", "ready", "destroyed"}},
		{"never", -1, []string{"deploying", "ready", "destroyed"}},
		{"default", 0, []string{"deploying", "ready", "ready", "destroyed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			settings := defaultSettings
			settings.AwakeReportEvery = tc.every
			env, w := newTestEnv(t, settings)
			wake := func(id string) {
				env.UpdateWorkflow(UpdateWake, id, &testsuite.TestUpdateCallback{
					OnReject: func(err error) { t.Errorf("wake %s rejected: %v", id, err) }, OnAccept: func() {},
					OnComplete: func(_ any, err error) { assert.NoError(t, err) },
				})
			}
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
			env.RegisterDelayedCallback(w.autosleep, 20*time.Minute)
			env.RegisterDelayedCallback(func() { wake("w1") }, time.Hour)
			env.RegisterDelayedCallback(w.autosleep, time.Hour+time.Minute)
			env.RegisterDelayedCallback(func() { wake("w2") }, time.Hour+6*time.Minute)
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2")) }, 2*time.Hour)
			start(env)
			require.NoError(t, env.GetWorkflowError())
			assert.Equal(t, tc.want, w.reports)
		})
	}
}

// continuedAs returns the input a run that continued as new handed over.
func continuedAs(t *testing.T, env *testsuite.TestWorkflowEnvironment) PreviewInput {
	t.Helper()
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "%v", err)
	var next PreviewInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.Carry)
	return next
}

// A head whose deploy failed is not rebuilt (nor reported failed again) by
// the run that continues as new: only a push or a redeploy retries it.
func TestFailedHeadNotRebuiltAfterContinueAsNew(t *testing.T) {
	failBad := func(_ context.Context, cmd activities.Command) (activities.CommandResult, error) {
		if cmd.Env["DRYDOCK_SHA"] == "bad" {
			return activities.CommandResult{}, temporal.NewNonRetryableApplicationError("exit 1", activities.ErrTypeCommandFailed, nil)
		}
		return activities.CommandResult{Succeeded: true}, nil
	}
	env, w := newTestEnv(t, defaultSettings)
	w.buildHook = failBad
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "good", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "bad", "d2")) }, time.Hour)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewFailed, status(t, env).Phase)
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(SignalTouch, nil)
	}, 2*time.Hour)
	start(env)
	next := continuedAs(t, env)

	env2, w2 := newTestEnv(t, defaultSettings)
	w2.buildHook = failBad
	env2.RegisterDelayedCallback(func() {
		st := status(t, env2)
		assert.Equal(t, PreviewFailed, st.Phase)
		assert.Equal(t, "good", st.DeployedSHA)
		env2.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"})
	}, time.Hour)
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.NoError(t, env2.GetWorkflowError())
	assert.Empty(t, w2.names(), "the failed head is not built again")
	assert.Equal(t, []string{"destroyed"}, w2.reports, "nor reported failed again")
}

// A destroy that arrives while the run waits to continue as new tears the
// next run down with the destroy's reason.
func TestDestroyReasonSurvivesContinueAsNew(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.reportTakes = 30 * time.Second })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(w.autosleep, 20*time.Minute)
	// The wake finds the machine asleep and refreshes the PR comment (30s):
	// the run waits for that before it continues as new.
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateWake, "w1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("wake rejected: %v", err) }, OnAccept: func() {},
			OnComplete: func(_ any, err error) { assert.NoError(t, err) },
		})
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(SignalTouch, nil)
	}, time.Hour+time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "destroyed by alice"})
	}, time.Hour+2*time.Second)
	start(env)
	next := continuedAs(t, env)

	env2, w2 := newTestEnv(t, defaultSettings)
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.NoError(t, env2.GetWorkflowError())
	assert.Equal(t, 1, w2.deletes)
	require.NotEmpty(t, w2.reportLog)
	assert.Equal(t, "torn down: destroyed by alice", w2.reportLog[len(w2.reportLog)-1].Report.Note)

	// Runs from before the carried reason handed a destroy over as a
	// synthetic closed event with the reason as its title.
	legacy := next
	carry := *next.Carry
	carry.Teardown, carry.Pending = "", []PullRequestEvent{{Action: "closed", Title: "destroyed by bob"}}
	legacy.Carry = &carry
	env3, w3 := newTestEnv(t, defaultSettings)
	env3.ExecuteWorkflow(PreviewLifecycleName, legacy)
	require.NoError(t, env3.GetWorkflowError())
	require.NotEmpty(t, w3.reportLog)
	assert.Equal(t, "torn down: destroyed by bob", w3.reportLog[len(w3.reportLog)-1].Report.Note)
}

// A pull request reopened while its preview is being torn down gets a
// fresh preview: the signal is not dropped with the completed run.
func TestReopenedDuringTeardownStartsAFreshPreview(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.deleteTakes = time.Minute })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2")) }, time.Hour)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewTearingDown, status(t, env).Phase)
		env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) // a redelivery: nothing
		env.SignalWorkflow(SignalPullRequest, prEvent("reopened", "sha2", "d3"))
	}, time.Hour+10*time.Second)
	start(env)
	assert.Equal(t, 1, w.deletes)
	assert.Equal(t, []string{"deploying", "ready", "destroyed"}, w.reports)
	next := continuedAs(t, env)
	assert.Equal(t, PreviewPending, next.Carry.Status.Phase)
	assert.Empty(t, next.Carry.Status.MachineID)
	assert.Empty(t, next.Carry.Teardown)
	require.Len(t, next.Carry.Pending, 1)
	assert.Equal(t, "reopened", next.Carry.Pending[0].Action)

	env2, w2 := newTestEnv(t, defaultSettings)
	env2.RegisterDelayedCallback(func() {
		st := status(t, env2)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha2", st.DeployedSHA)
		env2.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha2", "d4"))
	}, time.Hour)
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.NoError(t, env2.GetWorkflowError())
	assert.Equal(t, 1, w2.creates, "a new machine")
	assert.Equal(t, []string{"checkout sha2", "setup[0] tools", "build[0] compile", "seed[0] data", "start app"}, w2.names())
	assert.Equal(t, []string{"deploying", "ready", "destroyed"}, w2.reports)
}

// An opened delivery that arrives during the teardown of its closed pull
// request (GitHub does not promise order) says nothing and creates nothing.
func TestLateOpenedDuringTeardownCreatesNothing(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.deleteTakes = time.Minute })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		w.mu.Lock()
		w.prClosed = true
		w.mu.Unlock()
		env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2"))
	}, time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha2", "d3")) }, time.Hour+10*time.Second)
	start(env)
	next := continuedAs(t, env)
	env2, w2 := newTestEnv(t, defaultSettings, func(w *world) { w.prClosed = true })
	env2.ExecuteWorkflow(PreviewLifecycleName, next)
	require.True(t, env2.IsWorkflowCompleted())
	require.NoError(t, env2.GetWorkflowError())
	assert.Zero(t, w2.creates)
	assert.Empty(t, w2.reports)
	assert.Empty(t, w2.statuses)
}

// wakeOutcome records how a wake Update ended, and the preview's phase then.
type wakeOutcome struct {
	err   error
	phase PreviewPhase
}

func wakeInto(t *testing.T, env *testsuite.TestWorkflowEnvironment, id string, out chan<- wakeOutcome) {
	env.UpdateWorkflow(UpdateWake, id, &testsuite.TestUpdateCallback{
		OnReject: func(err error) { out <- wakeOutcome{err: err} },
		OnAccept: func() {},
		OnComplete: func(_ any, err error) {
			out <- wakeOutcome{err: err, phase: status(t, env).Phase}
		},
	})
}

func errType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return ""
}

// A wake during a long first deploy is answered "not ready yet" (a
// retryable error the router turns into a 503 with Retry-After) while the
// deploy goes on: the Update is not held open for the whole deploy.
func TestWakeDuringLongDeployIsBounded(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.createTakes = 3 * time.Hour })
	out := make(chan wakeOutcome, 4)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { wakeInto(t, env, "w1", out) }, 10*time.Minute)
	env.RegisterDelayedCallback(func() { wakeInto(t, env, "w2", out) }, 4*time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDestroy, DestroyRequest{Reason: "test over"}) }, 5*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	close(out)
	var got []wakeOutcome
	for o := range out {
		got = append(got, o)
	}
	require.Len(t, got, 2)
	assert.Equal(t, ErrTypePreviewNotReady, errType(got[0].err), "%v", got[0].err)
	assert.Equal(t, PreviewProvisioning, got[0].phase, "answered while the deploy went on")
	assert.NoError(t, got[1].err, "once ready, a wake wakes")
	assert.Equal(t, 1, w.creates)
}

// Wakes never hold up continue-as-new: a wake waiting for a preview that
// is not ready is answered with a retryable handover error, and the run
// hands over at once.
func TestWaitingWakeDoesNotBlockContinueAsNew(t *testing.T) {
	env, _ := newTestEnv(t, defaultSettings)
	out := make(chan wakeOutcome, 4)
	// No pull request event yet: the preview is pending, the wake waits.
	env.RegisterDelayedCallback(func() { wakeInto(t, env, "w1", out) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(SignalTouch, nil)
	}, time.Minute+10*time.Second)
	start(env)
	continuedAs(t, env)
	close(out)
	o, ok := <-out
	require.True(t, ok, "the wake was answered")
	assert.Equal(t, ErrTypePreviewHandover, errType(o.err), "%v", o.err)
}

// An app that never gets healthy is reported on the PR with a fixed text
// and the step's name: neither the upstream URL, nor the app's answer, nor
// its log (which RunCommand returns only when asked) reaches the comment or
// the deployment status. Operators find them in the workflow (LastError,
// the app log activity's result).
func TestUnhealthyAppReportLeaksNothing(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings, func(w *world) { w.unhealthy = true })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewFailed, st.Phase)
		assert.Contains(t, st.LastError, "http://10.1.2.3:8080/healthz", "operators see the details")
		env.SignalWorkflow(SignalDestroy, DestroyRequest{})
	}, time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"deploying", "failed", "destroyed"}, w.reports)
	last := w.commands[len(w.commands)-1]
	assert.Equal(t, "app log", last.Name)
	assert.True(t, last.KeepOutput, "the log is a successful command's output")

	failed := w.reportLog[1].Report
	assert.Equal(t, "wait for /healthz", failed.FailedStep)
	body := gh.RenderComment(failed)
	for _, leak := range []string{"10.1.2.3", "http://10.", "hunter2", "Internal Server Error", "169.254", "AKIA"} {
		for _, r := range w.reportLog {
			assert.NotContains(t, gh.RenderComment(r.Report), leak)
		}
		for _, d := range w.statusDescs {
			assert.NotContains(t, d, leak, "deployment status")
		}
	}
	assert.Contains(t, body, "health check")
	assert.Contains(t, body, "wait for /healthz")
}
