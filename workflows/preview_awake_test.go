package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
)

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
	total := 19*time.Minute + 1200*time.Millisecond
	assert.Equal(t, []time.Duration{0, 0, 10*time.Minute + 500*time.Millisecond, total}, reportedAwake(w))
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

// reportedAwake is the awake time each PR comment reported, in order.
func reportedAwake(w *world) []time.Duration {
	var awake []time.Duration
	for _, r := range w.reportLog {
		awake = append(awake, r.Report.AwakeFor)
	}
	return awake
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
		assert.Equal(t, 60.0, st.AwakeSeconds, "checkout and setup, then build (failed), ran 30s each; then the machine was deleted")
		assert.True(t, st.AwakeSince.IsZero())
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "good", "d2"))
	}, time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDestroy, DestroyRequest{}) }, 2*time.Hour)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 2, w.creates)
	last := w.reportLog[len(w.reportLog)-1].Report
	assert.Equal(t, "destroyed", last.State)
	// The first machine's minute, and the second machine's hour: created
	// at 1h, deleted at 2h.
	assert.Equal(t, time.Minute+time.Hour, last.AwakeFor)
	assert.Equal(t, int64(3660), m.sum(MetricPreviewAwake))
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
