package intake_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/drydock-dev/drydock/internal/intake"
)

// A Dependabot flood starts no previews with PREVIEW_SKIP_BOTS; a
// maintainer's label admits one bot pull request (and its removal tears
// it down), as for forks.
func TestBotPullRequestsSkipped(t *testing.T) {
	dependabot := []edit{{"pull_request.user.login", "dependabot[bot]"}, {"pull_request.user.type", "Bot"}}
	renovate := []edit{{"pull_request.user.login", "renovate[bot]"}} // no type: the login says it
	policy := intake.PreviewPolicy{Label: "preview", SkipBots: true}

	t.Run("bot pull requests start nothing", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, policy)
		for i, author := range [][]edit{dependabot, renovate, {{"pull_request.user.type", "Bot"}}} {
			for _, file := range []string{"opened", "synchronize", "reopened"} {
				code, out := deliver(t, h, "pull_request", "d-"+file+string(rune('a'+i)), payload(t, file, author...))
				assert.Equal(t, http.StatusOK, code, file)
				assert.Contains(t, out["reason"], "opened by the bot", file)
				assert.Contains(t, out["reason"], "PREVIEW_SKIP_BOTS", file)
			}
		}
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("a human's pull request still starts", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, policy)
		code, _ := deliver(t, h, "pull_request", "d-1", payload(t, "opened", edit{"pull_request.user.login", "robot-fan"}))
		assert.Equal(t, http.StatusAccepted, code)
		assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))
	})
	t.Run("without the setting bots get previews", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		code, _ := deliver(t, h, "pull_request", "d-1", payload(t, "opened", dependabot...))
		assert.Equal(t, http.StatusAccepted, code)
		assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))
	})
	t.Run("the label admits a bot pull request; removing it tears it down", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, policy)
		code, _ := deliver(t, h, "pull_request", "d-1", payload(t, "labeled",
			append(dependabot, edit{"label.name", "preview"}, edit{"pull_request.labels", labels("preview")})...))
		assert.Equal(t, http.StatusAccepted, code)
		code, _ = deliver(t, h, "pull_request", "d-2", payload(t, "synchronize",
			append(dependabot, edit{"pull_request.labels", labels("preview")})...))
		assert.Equal(t, http.StatusAccepted, code)
		code, _ = deliver(t, h, "pull_request", "d-3", payload(t, "unlabeled",
			append(dependabot, edit{"label.name", "preview"}, edit{"pull_request.labels", labels()})...))
		assert.Equal(t, http.StatusAccepted, code)
		assert.Equal(t, [2]int{2, 1}, pair(ft.calls()))
	})
}
