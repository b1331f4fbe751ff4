package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows"
)

// A maintainer's label approves the fork's head at that moment: the fork's
// next push is not deployed (the label is taken off and the PR says why),
// and replaying the old labeled or synchronize deliveries afterwards (new
// delivery IDs, to a workflow that completed) creates no machine.
func TestForkApprovalPinnedToCommit(t *testing.T) {
	s := newStack(t)
	const owner, name, number = "Acme", "Shop", 31
	s.gh.SetFile(owner, name, "main", ".drydock/preview.yml", autoSpec)
	src := newRepo(t)
	sha1 := src.head()
	pr := ghfixture.PR{Owner: owner, Repo: name, Number: number, HeadSHA: sha1, HeadRef: "patch-1",
		HeadOwner: "mallory", HeadRepo: "Shop", CloneURL: src.dir, Labels: []string{"preview"}, Label: "preview", Sender: "maintainer"}
	s.gh.SetPullRequest(owner, name, githubtest.PullRequest{Number: number, State: "open", HeadSHA: sha1, HeadRef: "patch-1", Labels: []string{"preview"}})
	id := workflows.PreviewWorkflowID(owner, name, number)

	code, out := s.deliver("labeled", pr, "fork-labeled")
	require.Equal(t, http.StatusAccepted, code, out)
	st := s.waitFor(id, "ready", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	assert.Equal(t, sha1, st.DeployedSHA)
	code, page := s.get(owner, name, number, "/")
	require.Equal(t, http.StatusOK, code, page)
	assert.Contains(t, page, sha1)

	// The fork pushes: GitHub's head moves, the synchronize still carries the label.
	sha2 := src.commit("unreviewed change")
	s.gh.SetPullRequest(owner, name, githubtest.PullRequest{Number: number, State: "open", HeadSHA: sha2, HeadRef: "patch-1", Labels: []string{"preview"}})
	pr.HeadSHA, pr.Sender = sha2, "mallory"
	code, out = s.deliver("synchronize", pr, "fork-push")
	require.Equal(t, http.StatusAccepted, code, out)
	s.waitClosed(id)

	ghPR, _ := s.gh.PullRequestOf(owner, name, number)
	assert.Empty(t, ghPR.Labels, "the label is taken off")
	comments := s.gh.Comments(owner, name, number)
	require.Len(t, comments, 1)
	assert.Contains(t, comments[0].Body, "new commits from a fork")
	assert.Contains(t, comments[0].Body, "approve "+sha2[:7])
	emu := s.emu.Stats()
	assert.EqualValues(t, 1, emu.Creates)
	assert.Equal(t, 0, emu.LiveMachines, "the approved preview is torn down")
	code, _ = s.get(owner, name, number, "/")
	assert.NotEqual(t, http.StatusOK, code, "sha2 is not served")

	// Old deliveries replayed (new IDs): each starts a fresh run that GitHub's answer ends.
	pr.HeadSHA, pr.Sender = sha1, "maintainer"
	for i, replay := range []struct {
		action string
		sha    string
	}{{"labeled", sha1}, {"synchronize", sha2}} {
		pr.HeadSHA = replay.sha
		code, out = s.deliver(replay.action, pr, "replayed-"+replay.action)
		require.Equal(t, http.StatusAccepted, code, out)
		s.waitClosed(id)
		assert.EqualValues(t, 1, s.emu.Stats().Creates, "replay %d (%s) created a machine", i, replay.action)
	}
	comments = s.gh.Comments(owner, name, number)
	require.Len(t, comments, 1)
	assert.True(t, strings.Contains(comments[0].Body, "approve "+sha2[:7]), "the replays said nothing more")
}
