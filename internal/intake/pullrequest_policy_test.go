package intake_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/workflows"
)

// The preview policy: opt-in labels, forks, drafts and the repository
// allow-list.

// optIn is the opt-in label mode's policy; optInLabeled labels a
// delivery with its label (in another case).
var (
	optIn        = intake.PreviewPolicy{Label: "preview", RequireLabel: true}
	optInLabeled = []edit{{"label.name", "Preview"}, {"pull_request.labels", labels("bug", "Preview")}}
)

func TestOptInLabelModeStartsWithTheLabel(t *testing.T) {
	policy, withLabel := optIn, optInLabeled
	t.Run("opened without the label is skipped", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1", payload(t, "opened"))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], `without the "preview" label`)
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("opened with the label starts", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, _ := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1",
			payload(t, "opened", edit{"pull_request.labels", labels("preview")}))
		assert.Equal(t, http.StatusAccepted, code)
		assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))
	})
	t.Run("labeled with the label starts", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1", payload(t, "labeled", withLabel...))
		assert.Equal(t, http.StatusAccepted, code, out)
		require.Len(t, ft.starts, 1)
		ev := ft.starts[0].Event.(workflows.PullRequestEvent)
		assert.Equal(t, "labeled", ev.Action)
		assert.Equal(t, []string{"bug", "Preview"}, ev.Labels)
		assert.Equal(t, "preview", ev.ApprovalLabel, "opt-in mode: the workflow checks the label with GitHub")
	})
	t.Run("labeled with another label does nothing", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1", payload(t, "labeled"))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], `"labeled" does not affect previews`)
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("labeled a closed pull request starts nothing", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1",
			payload(t, "labeled", append(withLabel, edit{"pull_request.state", "closed"})...))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], "pull request is closed")
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
}

func TestOptInLabelModeUnlabeled(t *testing.T) {
	policy := optIn
	t.Run("unlabeled of the label only signals", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1",
			payload(t, "unlabeled", edit{"label.name", "preview"}, edit{"pull_request.labels", labels("bug")}))
		assert.Equal(t, http.StatusAccepted, code, out)
		assert.Equal(t, "teardown requested (unlabeled)", out["reason"])
		assert.Equal(t, [2]int{0, 1}, pair(ft.calls()))
	})
	t.Run("unlabeled of the label without a preview starts nothing", func(t *testing.T) {
		ft := &fakeTemporal{signalErr: serviceerror.NewNotFound("not found")}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1",
			payload(t, "unlabeled", edit{"label.name", "preview"}))
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "no preview to tear down", out["reason"])
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("unlabeled of another label does nothing", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, _ := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1", payload(t, "unlabeled"))
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
}

func TestLabelsOutsideOptInModeDoNothingForSameRepoPRs(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	for i, file := range []string{"labeled", "unlabeled"} {
		code, _ := deliver(t, h, "pull_request", "d-"+file, payload(t, file, edit{"label.name", "preview"}))
		assert.Equal(t, http.StatusOK, code, i)
	}
	assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
}

func TestForkPolicy(t *testing.T) {
	t.Run("fork without the label is skipped", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		for _, file := range []string{"opened", "synchronize", "reopened"} {
			code, out := deliver(t, h, "pull_request", "d-"+file, payload(t, file, fork...))
			assert.Equal(t, http.StatusOK, code, file)
			assert.Contains(t, out["reason"], `fork without the "preview" label`, file)
		}
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("fork with the label starts", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		code, out := deliver(t, h, "pull_request", "d-1", payload(t, "opened",
			append(fork, edit{"pull_request.labels", labels("PREVIEW")})...))
		assert.Equal(t, http.StatusAccepted, code, out)
		require.Len(t, ft.starts, 1)
		ev := ft.starts[0].Event.(workflows.PullRequestEvent)
		assert.True(t, ev.Fork)
		assert.Equal(t, "preview", ev.ApprovalLabel, "the workflow checks the label with GitHub and pins the approval")
		assert.Equal(t, "https://github.com/mallory/Store-Front.git", ev.CloneURL)
		assert.Equal(t, "Acme", ev.Owner, "the preview belongs to the base repository")
		assert.Equal(t, wantID, ft.starts[0].ID)
	})
	t.Run("a maintainer labelling a fork starts it, unlabelling tears it down", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		code, _ := deliver(t, h, "pull_request", "d-1", payload(t, "labeled",
			append(fork, edit{"label.name", "preview"}, edit{"pull_request.labels", labels("preview")})...))
		assert.Equal(t, http.StatusAccepted, code)
		code, _ = deliver(t, h, "pull_request", "d-2", payload(t, "unlabeled",
			append(fork, edit{"label.name", "preview"}, edit{"pull_request.labels", labels()})...))
		assert.Equal(t, http.StatusAccepted, code)
		assert.Equal(t, [2]int{1, 1}, pair(ft.calls()))
	})
	t.Run("case of the full name does not make a fork", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		code, _ := deliver(t, h, "pull_request", "d-1", payload(t, "opened",
			edit{"pull_request.head.repo.full_name", "acme/store-front"}))
		assert.Equal(t, http.StatusAccepted, code)
		assert.False(t, ft.starts[0].Event.(workflows.PullRequestEvent).Fork)
		assert.Empty(t, ft.starts[0].Event.(workflows.PullRequestEvent).ApprovalLabel, "no label needed: no approval check")
	})
	t.Run("empty label: forks never get a preview", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: ""})
		code, out := deliver(t, h, "pull_request", "d-1", payload(t, "opened",
			append(fork, edit{"pull_request.labels", labels("preview")})...))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], "fork previews are disabled")
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
}

func TestDraftPolicy(t *testing.T) {
	draft := edit{"pull_request.draft", true}
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	for _, file := range []string{"opened", "synchronize"} {
		code, out := deliver(t, h, "pull_request", "d-"+file, payload(t, file, draft))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], "draft pull request")
	}
	assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	code, _ := deliver(t, h, "pull_request", "d-ready", payload(t, "ready_for_review"))
	assert.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))

	ft = &fakeTemporal{}
	h = prHandler(t, ft, intake.PreviewPolicy{Label: "preview", Drafts: true})
	code, _ = deliver(t, h, "pull_request", "d-1", payload(t, "opened", draft))
	assert.Equal(t, http.StatusAccepted, code)
	require.Len(t, ft.starts, 1)
	assert.True(t, ft.starts[0].Event.(workflows.PullRequestEvent).Draft)
}

func TestRepoAllowList(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview", Repos: []string{"octo/other"}})
	code, out := deliver(t, h, "pull_request", "d-1", payload(t, "opened"))
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, out["reason"], "Acme/Store-Front is not in the preview allow-list")
	assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))

	h = prHandler(t, ft, intake.PreviewPolicy{Label: "preview", Repos: []string{"octo/other", " acme/STORE-front "}})
	code, _ = deliver(t, h, "pull_request", "d-1", payload(t, "opened"))
	assert.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))
}

func TestPolicyValidation(t *testing.T) {
	for _, tc := range []struct {
		p    intake.PreviewPolicy
		want string
	}{
		{intake.PreviewPolicy{RequireLabel: true}, "PREVIEW_FORK_LABEL is empty"},
		{intake.PreviewPolicy{Label: "preview", Repos: []string{"justrepo"}}, `PREVIEW_REPOS: "justrepo" is not owner/repo`},
		{intake.PreviewPolicy{Label: "preview", Repos: []string{"a/b/c"}}, "PREVIEW_REPOS"},
	} {
		_, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: &fakeTemporal{}, Policy: tc.p})
		assert.ErrorContains(t, err, tc.want)
	}
	_, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: &fakeTemporal{}, Policy: intake.PreviewPolicy{Repos: []string{"a/b", ""}}})
	assert.NoError(t, err)
}
