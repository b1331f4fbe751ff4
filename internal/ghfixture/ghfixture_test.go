package ghfixture

import (
	"encoding/json"
	"testing"

	"github.com/google/go-github/v62/github"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testenv"
)

func TestRewritesEveryActionFixture(t *testing.T) {
	dir := testenv.SharedDir(t) + "/fixtures/github-webhooks"
	for _, action := range []string{"opened", "synchronize", "closed", "reopened", "labeled", "unlabeled", "ready_for_review"} {
		b, err := PullRequest(dir, action, PR{Owner: "acme", Repo: "shop", Number: 7, HeadSHA: "abc123", HeadRef: "feature/x",
			CloneURL: "/tmp/shop.git", HeadOwner: "fork", HeadRepo: "shop", Labels: []string{"preview"}})
		require.NoError(t, err, action)
		var ev github.PullRequestEvent
		require.NoError(t, json.Unmarshal(b, &ev), action)
		assert.Equal(t, action, ev.GetAction())
		assert.Equal(t, 7, ev.GetNumber())
		assert.Equal(t, "acme/shop", ev.GetRepo().GetFullName())
		assert.Equal(t, "abc123", ev.GetPullRequest().GetHead().GetSHA())
		assert.Equal(t, "feature/x", ev.GetPullRequest().GetHead().GetRef())
		assert.Equal(t, "fork/shop", ev.GetPullRequest().GetHead().GetRepo().GetFullName())
		assert.Equal(t, "/tmp/shop.git", ev.GetPullRequest().GetHead().GetRepo().GetCloneURL())
		assert.Equal(t, "acme/shop", ev.GetPullRequest().GetBase().GetRepo().GetFullName())
		assert.Equal(t, "preview", ev.GetPullRequest().Labels[0].GetName())
	}
}
