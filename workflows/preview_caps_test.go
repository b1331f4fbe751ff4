package workflows

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// slotWorld is what a preview asked of the PreviewSlots coordinator.
type slotWorld struct {
	mu       sync.Mutex
	answer   func(n int) slotsapi.Answer // the n-th request's answer (from 1)
	asks     int
	releases []string
}

func (s *slotWorld) counts() (asks, releases int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asks, len(s.releases)
}

// newCapsEnv is newTestEnv with the worker's caps and a coordinator double.
func newCapsEnv(t *testing.T, settings activities.PreviewSettings, caps activities.PreviewCaps, configure ...func(*world)) (*testsuite.TestWorkflowEnvironment, *world, *slotWorld) {
	env, w := newTestEnv(t, settings, configure...)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: PreviewWorkflowID("Codertocat", "Hello-World", 2)})
	sw := &slotWorld{answer: func(int) slotsapi.Answer { return slotsapi.Answer{Granted: true} }}
	env.RegisterActivity(&activities.PreviewSlots{})
	env.OnActivity(previewActs.PreviewCaps, mock.Anything).Return(caps, nil)
	env.OnActivity(slotActs.RequestSlot, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req slotsapi.Request) (slotsapi.Answer, error) {
			sw.mu.Lock()
			defer sw.mu.Unlock()
			assert.Equal(t, PreviewWorkflowID("Codertocat", "Hello-World", 2), req.WorkflowID)
			sw.asks++
			return sw.answer(sw.asks), nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, slotsapi.WorkflowID, "", slotsapi.SignalRelease, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			sw.mu.Lock()
			defer sw.mu.Unlock()
			sw.releases = append(sw.releases, arg.(string))
			return nil
		})
	return env, w, sw
}

var capped = activities.PreviewCaps{Slots: slotsapi.Caps{MaxOpen: 10}}

func queuedAnswer(int) slotsapi.Answer {
	return slotsapi.Answer{Position: 3, Open: 12, MaxOpen: 10, Queued: 3, Reason: "queued: 12 previews open, limit 10"}
}

// Past the cap the PR says the preview is queued, and nothing is created;
// the coordinator's grant (a slot freed by another PR's close) deploys it;
// its close gives the slot back.
func TestQueuedPreviewDeploysWhenGranted(t *testing.T) {
	env, w, sw := newCapsEnv(t, defaultSettings, capped)
	sw.answer = queuedAnswer
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewProvisioning, st.Phase)
		w.mu.Lock()
		assert.Zero(t, w.creates, "no machine while queued")
		assert.Equal(t, []string{"deploying", "queued"}, w.reports, "one queued comment, however often it asks again")
		assert.Contains(t, w.reportLog[1].Report.Note, "queued: 12 previews open, limit 10")
		assert.Contains(t, w.reportLog[1].Report.Note, "number 3 in the queue")
		w.mu.Unlock()
		asks, _ := sw.counts()
		assert.GreaterOrEqual(t, asks, 2, "a queued preview asks again now and then (a lost grant is not forever)")
		env.SignalWorkflow(slotsapi.SignalGranted, slotsapi.Answer{Granted: true})
	}, 45*time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2"))
	}, 50*time.Minute)
	start(env)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 1, w.creates)
	assert.Equal(t, []string{"deploying", "queued", "ready", "destroyed"}, w.reports)
	assert.Equal(t, []string{PreviewWorkflowID("Codertocat", "Hello-World", 2)}, sw.releases, "the close gives the slot back")
}

// A preview closed while queued gives its place back and creates nothing.
func TestClosedWhileQueuedReleasesItsPlace(t *testing.T) {
	env, w, sw := newCapsEnv(t, defaultSettings, capped)
	sw.answer = queuedAnswer
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2")) }, 5*time.Minute)
	start(env)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Zero(t, w.creates)
	assert.Len(t, sw.releases, 1)
}

// A spec asking for more than PREVIEW_MAX_* fails the deploy with a clear
// PR comment, before any slot is asked for or machine created.
func TestMachineTooLargeRefused(t *testing.T) {
	caps := capped
	caps.MaxVCPU, caps.MaxMemoryMiB, caps.MaxStorageGiB = 0.5, 512, 100 // testSpec: 1 vCPU, 1024 MiB, 5 GiB
	env, w, sw := newCapsEnv(t, defaultSettings, caps)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewFailed, status(t, env).Phase)
		env.SignalWorkflow(SignalDestroy, DestroyRequest{})
	}, time.Minute)
	start(env)

	require.NoError(t, env.GetWorkflowError())
	assert.Zero(t, w.creates, "no machine created")
	asks, releases := sw.counts()
	assert.Zero(t, asks, "no slot asked for")
	assert.Zero(t, releases)
	require.Equal(t, []string{"deploying", "failed", "destroyed"}, w.reports)
	msg := w.reportLog[1].Report.Error
	assert.Contains(t, msg, "1 vCPU (PREVIEW_MAX_VCPU=0.5)")
	assert.Contains(t, msg, "1024 MiB of memory (PREVIEW_MAX_MEMORY_MIB=512)")
	assert.NotContains(t, msg, "PREVIEW_MAX_STORAGE_GIB", "storage fits")
	assert.Contains(t, msg, "no machine was created")
}

// A Dedalus quota refusal is not an hour of silent retries: the PR says
// the preview is queued and the create is tried again after a bounded
// backoff, and the preview deploys once the quota allows.
func TestQuotaErrorQueuesAndRetries(t *testing.T) {
	env, w, sw := newCapsEnv(t, defaultSettings, activities.PreviewCaps{}, func(w *world) {
		w.createHook = func() error {
			if w.creates <= 3 {
				return temporal.NewNonRetryableApplicationError("dedalus: 403 QUOTA_EXCEEDED: machine quota reached", activities.ErrTypeQuotaExceeded, nil)
			}
			return nil
		}
	})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewReady, status(t, env).Phase, "30s + 1m + 2m of waiting, not an hour")
		env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2"))
	}, 4*time.Minute)
	start(env)

	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 4, w.creates)
	assert.Equal(t, []string{"deploying", "queued", "ready", "destroyed"}, w.reports, "one queued comment")
	assert.Contains(t, w.reportLog[1].Report.Note, "quota is reached")
	asks, _ := sw.counts()
	assert.Zero(t, asks, "no count cap: no slot asked for")
}

// A create that fails for good gives the slot back: no machine holds it.
func TestFailedCreateReleasesTheSlot(t *testing.T) {
	env, w, sw := newCapsEnv(t, defaultSettings, capped, func(w *world) {
		w.createHook = func() error {
			return temporal.NewNonRetryableApplicationError("dedalus: 400 bad request", activities.ErrTypeRejected, nil)
		}
	})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewFailed, status(t, env).Phase)
		asks, releases := sw.counts()
		assert.Equal(t, 1, asks)
		assert.Equal(t, 1, releases, "released at the failure, not at the close")
		env.SignalWorkflow(SignalDestroy, DestroyRequest{})
	}, time.Minute)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 1, w.creates)
	_, releases := sw.counts()
	assert.Equal(t, 1, releases)
}

// A failed preview that keeps its machine keeps its slot; one whose
// machine is deleted gives it back at once.
func TestFailedPreviewSlotFollowsItsMachine(t *testing.T) {
	failBuild := func(w *world) {
		w.buildHook = func(context.Context, activities.Command) (activities.CommandResult, error) {
			return activities.CommandResult{}, temporal.NewNonRetryableApplicationError("exit 1", activities.ErrTypeCommandFailed, nil)
		}
	}
	for _, keep := range []bool{true, false} {
		settings := defaultSettings
		settings.KeepFailedMachine = keep
		env, _, sw := newCapsEnv(t, settings, capped, failBuild)
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
		env.RegisterDelayedCallback(func() {
			assert.Equal(t, PreviewFailed, status(t, env).Phase)
			_, releases := sw.counts()
			if keep {
				assert.Zero(t, releases, "the kept machine holds its slot")
			} else {
				assert.Equal(t, 1, releases, "the deleted machine's slot is free")
			}
			env.SignalWorkflow(SignalDestroy, DestroyRequest{})
		}, time.Hour)
		start(env)
		require.NoError(t, env.GetWorkflowError())
		_, releases := sw.counts()
		assert.Equal(t, 1, releases, "keep=%v: one release in all", keep)
	}
}
