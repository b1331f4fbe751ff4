package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/activities"
)

// The operator's visibility is in the status from the run's first moment
// (before any deploy or wake), and the Dedalus preview is created with it.
func TestVisibilityFromSettingsBeforeFirstDeploy(t *testing.T) {
	settings := defaultSettings
	settings.Visibility = VisibilityOrg
	env, w := newTestEnv(t, settings, func(w *world) { w.createTakes = time.Minute })
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewPending, st.Phase)
		assert.Equal(t, VisibilityOrg, st.Visibility, "pending preview: the router already knows who may see it")
		env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1"))
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewProvisioning, st.Phase)
		assert.Equal(t, VisibilityOrg, st.Visibility)
	}, 10*time.Second)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, VisibilityOrg, st.Visibility)
		env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2"))
	}, 2*time.Minute)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{VisibilityOrg}, w.previewVisibility, "the Dedalus preview has the same visibility")
}

// Settings from before the option (no visibility) fail closed: private.
func TestVisibilityDefaultsToPrivate(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, VisibilityPrivate, status(t, env).Visibility)
		env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha1", "d2"))
	}, time.Minute)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{VisibilityPrivate}, w.previewVisibility)
}

// The spec's visibility wins over the operator's setting, up to the
// operator's ceiling; a spec change on a redeploy updates the status and
// replaces the Dedalus preview (Dedalus has no update of a preview).
func TestSpecVisibilityWinsUpToTheCeilingAndChangesOnRedeploy(t *testing.T) {
	settings := defaultSettings
	settings.Visibility = VisibilityPrivate
	settings.VisibilityMax = VisibilityOrg
	env, w := newTestEnv(t, settings, func(w *world) { w.specVisibility = VisibilityPublic })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, prEvent("opened", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, VisibilityOrg, st.Visibility, "public asked, org allowed: org")
		w.mu.Lock()
		w.specVisibility = VisibilityPrivate // the base branch's spec changes
		w.mu.Unlock()
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha2", "d2"))
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha2", st.DeployedSHA)
		assert.Equal(t, VisibilityPrivate, st.Visibility)
		assert.Equal(t, "pv-2", st.PreviewID, "a new Dedalus preview")
		assert.Equal(t, "http://127.0.0.1:9998", st.URL, "the router proxies to the new preview")
		env.SignalWorkflow(SignalPullRequest, prEvent("synchronize", "sha3", "d3"))
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, "pv-2", status(t, env).PreviewID, "same visibility: the preview is kept")
		env.SignalWorkflow(SignalPullRequest, prEvent("closed", "sha3", "d4"))
	}, 3*time.Minute)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{VisibilityOrg, VisibilityPrivate}, w.previewVisibility)
	assert.Equal(t, []string{"pv-1", "pv-2"}, w.closedPreviews, "the org preview is closed before the private one is made; the private one at teardown")
}

// The visibility read from the spec survives continue-as-new: the next run
// does not fall back to the operator's setting.
func TestSpecVisibilitySurvivesContinueAsNew(t *testing.T) {
	settings := activities.PreviewSettings{Visibility: VisibilityPrivate}
	p := &preview{settings: settings}
	p.SpecVisibility = VisibilityPublic
	assert.Equal(t, VisibilityPublic, p.visibility())
	carried := p.PreviewCarry
	next := &preview{PreviewCarry: carried, settings: settings}
	assert.Equal(t, VisibilityPublic, next.visibility())
}
