package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

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
