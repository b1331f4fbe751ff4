package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// Past PREVIEW_MAX_OPEN_PER_REPO the second pull request's preview is
// queued (the PR comment says so, no machine is made); closing the first
// frees its slot, and the queued preview deploys by itself.
func TestPreviewCapQueuesUntilASlotFrees(t *testing.T) {
	s := newStack(t)
	// A per-repository cap: previews other tests left in other
	// repositories (the coordinator counts what runs) do not matter.
	s.stopWorker(syscall.SIGTERM)
	s.workerE = append(s.workerE, "PREVIEW_MAX_OPEN_PER_REPO=1", "PREVIEW_MAX_OPEN=50")
	s.startWorker()
	t.Cleanup(func() {
		_ = s.tc.TerminateWorkflow(context.Background(), slotsapi.WorkflowID, "", "end of test")
	})
	const owner, name = "capped-org", "busy-app"
	prs := openTwoOn(t, s, owner, name)
	s.keepHistories(map[string]runMatcher{
		"preview-slots-queue-then-grant": withID(slotsapi.WorkflowID),
		"preview-lifecycle-queued":       withID(prs.id2),
	})

	code, out := s.deliver("opened", prs.first, "caps-opened-1")
	require.Equal(t, http.StatusAccepted, code, out)
	s.waitFor(prs.id1, "first ready", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	creates := s.emu.Stats().Creates

	code, out = s.deliver("opened", prs.second, "caps-opened-2")
	require.Equal(t, http.StatusAccepted, code, out)
	body := waitCappedComment(t, s, owner, name)
	assert.Contains(t, body, "Queued: waiting for a free preview slot")
	assert.Contains(t, body, "starts by itself when a slot frees")
	time.Sleep(2 * time.Second) // a queued preview makes no machine, however long it waits
	assert.Equal(t, creates, s.emu.Stats().Creates, "no machine for the queued preview")
	st, err := s.tryStatus(prs.id2)
	require.NoError(t, err)
	assert.Equal(t, workflows.PreviewProvisioning, st.Phase)
	assert.Empty(t, st.MachineID)

	start := time.Now()
	code, _ = s.deliver("closed", prs.first, "caps-closed-1")
	require.Equal(t, http.StatusAccepted, code)
	s.waitClosed(prs.id1)
	st = s.waitFor(prs.id2, "the queued preview ready", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	t.Logf("queued preview ready %s after the close freed its slot", time.Since(start))
	assert.Equal(t, prs.sha, st.DeployedSHA)
	code, page := s.get(owner, name, 2, "/")
	require.Equal(t, http.StatusOK, code, page)
	// The comment is rewritten after the preview is ready (an activity of
	// its own): wait for it.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		comments := s.gh.Comments(owner, name, 2)
		if assert.Len(ct, comments, 1, "one comment, updated in place") {
			assert.NotContains(ct, comments[0].Body, "Queued")
		}
	}, 30*time.Second, 100*time.Millisecond)

	// Closing the second gives its slot back too: the coordinator, counting
	// nothing, completes.
	code, _ = s.deliver("closed", prs.second, "caps-closed-2")
	require.Equal(t, http.StatusAccepted, code)
	s.waitClosed(prs.id2)
	waitCoordinatorDone(t, s)
}

// twoPRs are pull requests 1 and 2 of one repository, at one head sha,
// and their previews' workflow IDs.
type twoPRs struct {
	first, second ghfixture.PR
	id1, id2, sha string
}

// openTwoOn gives owner/name the auto spec and a head repository, and
// returns its pull requests 1 and 2 (not delivered yet).
func openTwoOn(t *testing.T, s *stack, owner, name string) twoPRs {
	s.gh.SetFile(owner, name, "main", ".drydock/preview.yml", autoSpec)
	src := newRepo(t)
	sha := src.head()
	return twoPRs{
		first:  ghfixture.PR{Owner: owner, Repo: name, Number: 1, HeadSHA: sha, HeadRef: "one", CloneURL: src.dir},
		second: ghfixture.PR{Owner: owner, Repo: name, Number: 2, HeadSHA: sha, HeadRef: "two", CloneURL: src.dir},
		id1:    workflows.PreviewWorkflowID(owner, name, 1),
		id2:    workflows.PreviewWorkflowID(owner, name, 2),
		sha:    sha,
	}
}

// waitCappedComment waits for pull request 2 of owner/name to be told its
// preview is queued behind the per-repository cap; it returns the comment.
func waitCappedComment(t *testing.T, s *stack, owner, name string) string {
	var body string
	require.Eventually(t, func() bool {
		for _, c := range s.gh.Comments(owner, name, 2) {
			body = c.Body
		}
		// Markdown-escaped in the comment: capped\-org/busy\-app.
		return strings.Contains(body, "queued: 1 previews open in capped") && strings.Contains(body, "limit 1 per repository")
	}, 60*time.Second, 100*time.Millisecond, "the queued comment")
	return body
}

// waitCoordinatorDone waits for the preview slots coordinator to be
// closed (or gone).
func waitCoordinatorDone(t *testing.T, s *stack) {
	require.Eventually(t, func() bool {
		d, err := s.tc.DescribeWorkflowExecution(context.Background(), slotsapi.WorkflowID, "")
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return true
		}
		return err == nil && d.GetWorkflowExecutionInfo().GetCloseTime() != nil
	}, 30*time.Second, 200*time.Millisecond, "the coordinator completes when nothing is held")
}

// A Dedalus quota refusal (the emulator's MaxMachines) is not an hour of
// silent retries: the PR says the preview is queued, and the create is
// tried again after a bounded wait, which succeeds once the other
// preview's machine is gone.
func TestDedalusQuotaQueuesThePreview(t *testing.T) {
	s := newStack(t)
	quota := startEmulator(t, 1)
	s.stopWorker(syscall.SIGTERM)
	s.workerE = append(s.workerE, "DEDALUS_BASE_URL="+quota.URL(), "DEDALUS_API_KEY="+quota.APIKey())
	s.startWorker()

	const owner, name = "quota-org", "app"
	prs := openTwoOn(t, s, owner, name)
	first, second, id1, id2, sha := prs.first, prs.second, prs.id1, prs.id2, prs.sha
	s.keepHistories(nil)

	code, out := s.deliver("opened", first, "quota-opened-1")
	require.Equal(t, http.StatusAccepted, code, out)
	s.waitFor(id1, "first ready", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	code, out = s.deliver("opened", second, "quota-opened-2")
	require.Equal(t, http.StatusAccepted, code, out)
	require.Eventually(t, func() bool {
		for _, c := range s.gh.Comments(owner, name, 2) {
			return strings.Contains(c.Body, "Queued") && strings.Contains(c.Body, "quota is reached")
		}
		return false
	}, 60*time.Second, 100*time.Millisecond, "the queued comment")
	assert.EqualValues(t, 1, quota.Stats().Creates, "the refused create made nothing")

	start := time.Now()
	code, _ = s.deliver("closed", first, "quota-closed-1")
	require.Equal(t, http.StatusAccepted, code)
	s.waitClosed(id1)
	st := s.waitFor(id2, "the queued preview ready", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	t.Logf("the preview refused for quota became ready %s after the other closed", time.Since(start))
	assert.Equal(t, sha, st.DeployedSHA)
	assert.EqualValues(t, 2, quota.Stats().Creates)

	code, _ = s.deliver("closed", second, "quota-closed-2")
	require.Equal(t, http.StatusAccepted, code)
	s.waitClosed(id2)
}
