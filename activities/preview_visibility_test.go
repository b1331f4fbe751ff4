package activities_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
)

// CreatePreview creates the Dedalus preview with the visibility it is given
// (as the emulator records it), an empty one (a call from a workflow that
// predates the setting) as private, and refuses an unknown one.
func TestCreatePreviewPassesTheVisibility(t *testing.T) {
	_, c := startEmulator(t, nil)
	m, err := c.CreateMachine(context.Background(), dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 1}, "vis-create")
	require.NoError(t, err)
	a := &activities.Machines{Client: c}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)

	for _, tc := range []struct{ ask, want string }{
		{"public", dedalus.VisibilityPublic}, {"org", dedalus.VisibilityOrg}, {"private", dedalus.VisibilityPrivate}, {"", dedalus.VisibilityPrivate},
	} {
		v, err := env.ExecuteActivity(a.CreatePreview, m.MachineID, int64(3000), tc.ask)
		require.NoError(t, err, tc.ask)
		var ref activities.PreviewRef
		require.NoError(t, v.Get(&ref))
		got, err := c.GetPreview(context.Background(), m.MachineID, ref.PreviewID)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got.Visibility, "asked %q", tc.ask)
	}
	_, err = env.ExecuteActivity(a.CreatePreview, m.MachineID, int64(3000), "everyone")
	require.ErrorContains(t, err, `visibility "everyone"`)
}

// The operator's visibility for a repository: its PREVIEW_VISIBILITY_REPOS
// entry (names compared case-insensitively), else PREVIEW_VISIBILITY, else
// private.
func TestPreviewSettingsVisibility(t *testing.T) {
	repos, err := activities.ParseVisibilityRepos(" octo/docs=public, Octo/App=org ,")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"octo/docs": "public", "octo/app": "org"}, repos)
	p := &activities.Previews{Visibility: "org", VisibilityRepos: repos, VisibilityMax: "public"}
	for repo, want := range map[string]string{"docs": "public", "APP": "org", "other": "org"} {
		s, err := p.Settings(context.Background(), "OCTO", repo, 1)
		require.NoError(t, err)
		assert.Equal(t, want, s.Visibility, repo)
		assert.Equal(t, "public", s.VisibilityMax)
	}
	s, err := (&activities.Previews{}).Settings(context.Background(), "octo", "docs", 1)
	require.NoError(t, err)
	assert.Equal(t, "private", s.Visibility, "nothing configured: private")

	for _, bad := range []string{"octo/docs", "octo=public", "/docs=public", "octo/docs=everyone", "octo/docs=org,OCTO/docs=public", "a/b/c=public"} {
		_, err := activities.ParseVisibilityRepos(bad)
		assert.Error(t, err, bad)
	}
}
