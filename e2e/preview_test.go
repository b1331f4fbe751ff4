package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/workflows"
)

func TestPreviewLifecycleEndToEnd(t *testing.T) {
	s := newStack(t)
	const owner, name, number = "Codertocat", "Hello-World", 7
	s.gh.SetFile(owner, name, "main", ".drydock/preview.yml", autoSpec)
	src := newRepo(t)
	sha1 := src.head()
	pwned := filepath.Join(t.TempDir(), "pwned")
	pr := ghfixture.PR{Owner: owner, Repo: name, Number: number, HeadSHA: sha1,
		HeadRef: "feature/x$(touch " + pwned + ")", CloneURL: src.dir}
	id := workflows.PreviewWorkflowID(owner, name, number)
	s.keepHistories(map[string]runMatcher{"preview-lifecycle-open-wake-push-close": withID(id)})

	checkBadSignatureStartsNothing(t, s, pr, id)

	// A signed opened delivery: accepted within milliseconds.
	start := time.Now()
	code, out := s.deliver("opened", pr, "delivery-opened")
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, id, out["workflow_id"])
	t.Logf("opened accepted in %s", time.Since(start))

	st := s.waitFor(id, "ready", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	t.Logf("preview ready %s after the webhook", time.Since(start))
	assert.Equal(t, sha1, st.DeployedSHA)
	assert.NoFileExists(t, pwned, "the branch name ran nothing")
	assert.Equal(t, workflows.VisibilityPublic, st.Visibility, "the worker's PREVIEW_VISIBILITY")
	assert.Equal(t, workflows.VisibilityPublic, s.previewVisibility(st), "the Dedalus preview has it too")

	code, page := s.get(owner, name, number, "/")
	require.Equal(t, http.StatusOK, code, page)
	assert.Contains(t, page, sha1)

	// Redelivery changes nothing.
	code, _ = s.deliver("opened", pr, "delivery-opened")
	assert.Equal(t, http.StatusOK, code)

	checkDeployedReported(t, s, pr)
	checkOneWakeForConcurrentRequests(t, s, pr, st.MachineID)

	// A push redeploys: the page shows the new SHA.
	sha2 := src.commit("second push")
	pr.HeadSHA = sha2
	code, _ = s.deliver("synchronize", pr, "delivery-sync")
	require.Equal(t, http.StatusAccepted, code)
	s.waitFor(id, "sha2 deployed", func(st workflows.PreviewStatus) bool {
		return st.Phase == workflows.PreviewReady && st.DeployedSHA == sha2
	})
	code, page = s.get(owner, name, number, "/")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, page, sha2)
	assert.EqualValues(t, 1, s.emu.Stats().Creates, "one machine per PR")

	checkCloseLeavesNothing(t, s, pr, id)
}

// checkBadSignatureStartsNothing checks that a badly signed opened
// delivery of pr is refused and starts no workflow id.
func checkBadSignatureStartsNothing(t *testing.T, s *stack, pr ghfixture.PR, id string) {
	body, err := ghfixture.PullRequest("opened", pr)
	require.NoError(t, err)
	code, _ := s.post("pull_request", "bad-sig", body, intake.SignatureHeader([]byte("wrong"), body))
	assert.Equal(t, http.StatusUnauthorized, code)
	if desc, err := s.tc.DescribeWorkflowExecution(context.Background(), id, ""); err == nil {
		// An earlier test run's completed workflow may exist; nothing may be running.
		assert.NotEqual(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.GetWorkflowExecutionInfo().GetStatus(),
			"no workflow was started by a badly signed delivery")
	}
}

// checkDeployedReported checks that GitHub saw a deployment of pr (pull
// request 7 of Codertocat/Hello-World) going in_progress → success and one
// PR comment with the URL.
func checkDeployedReported(t *testing.T, s *stack, pr ghfixture.PR) {
	deps := s.gh.Deployments(pr.Owner, pr.Repo)
	require.Len(t, deps, 1)
	assert.Equal(t, pr.HeadSHA, deps[0].SHA)
	assert.Equal(t, "preview/pr-7", deps[0].Environment)
	var states []string
	for _, ds := range deps[0].Statuses {
		states = append(states, ds.State)
	}
	assert.Equal(t, []string{"in_progress", "success"}, states)
	assert.Equal(t, "http://pr-7--codertocat--hello-world.preview.localhost:8090", deps[0].Statuses[1].EnvironmentURL)
	comments := s.gh.Comments(pr.Owner, pr.Repo, pr.Number)
	require.Len(t, comments, 1)
	assert.Contains(t, comments[0].Body, "http://pr-7--codertocat--hello-world.preview.localhost:8090")
	assert.Contains(t, comments[0].Body, pr.HeadSHA[:7])
}

// checkOneWakeForConcurrentRequests lets pr's machine fall asleep; 200
// concurrent requests then wake it exactly once.
func checkOneWakeForConcurrentRequests(t *testing.T, s *stack, pr ghfixture.PR, machineID string) {
	owner, name, number := pr.Owner, pr.Repo, pr.Number
	_, before := count(t, s, owner, name, number)
	require.Eventually(t, func() bool { return machinePhase(s.emu, machineID) == "sleeping" }, 20*time.Second, 50*time.Millisecond, "autosleep")
	wakesBefore := s.emu.Stats().Wakes
	var wg sync.WaitGroup
	codes := make([]int, 200)
	counts := make([]int, 200)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], counts[i] = count(t, s, owner, name, number)
		}()
	}
	wg.Wait()
	maxCount := 0
	for i := range codes {
		assert.Equal(t, http.StatusOK, codes[i], "request %d", i)
		maxCount = max(maxCount, counts[i])
	}
	assert.EqualValues(t, 1, s.emu.Stats().Wakes-wakesBefore, "exactly one wake for 200 concurrent requests")
	assert.Equal(t, before+200, maxCount, "the app's in-memory counter survived sleep")
}

// checkCloseLeavesNothing closes pr: its preview (workflow id) ends, with
// nothing left on Dedalus and GitHub told.
func checkCloseLeavesNothing(t *testing.T, s *stack, pr ghfixture.PR, id string) {
	code, _ := s.deliver("closed", pr, "delivery-closed")
	require.Equal(t, http.StatusAccepted, code)
	s.waitClosed(id)
	stats := s.emu.Stats()
	assert.Equal(t, 0, stats.LiveMachines, "no machine left")
	assert.Equal(t, 0, stats.PreviewsLive, "no preview left")
	code, _ = s.get(pr.Owner, pr.Repo, pr.Number, "/")
	assert.Equal(t, http.StatusGone, code)
	deps := s.gh.Deployments(pr.Owner, pr.Repo)
	last := deps[len(deps)-1].Statuses
	assert.Equal(t, "inactive", last[len(last)-1].State)
	comments := s.gh.Comments(pr.Owner, pr.Repo, pr.Number)
	require.Len(t, comments, 1, "the comment is updated in place")
	assert.Contains(t, strings.ToLower(comments[0].Body), "closed")
}

func count(t *testing.T, s *stack, owner, name string, number int) (int, int) {
	code, body := s.get(owner, name, number, "/count")
	if code != http.StatusOK {
		return code, 0
	}
	var c struct{ Count int }
	require.NoError(t, json.Unmarshal([]byte(body), &c))
	return code, c.Count
}

func machinePhase(emu *emulator.Server, id string) string {
	for _, m := range emu.Stats().Machines {
		if m.MachineID == id {
			return string(m.Phase)
		}
	}
	return ""
}

// A worker killed mid-bootstrap and restarted finishes the preview with
// exactly one machine: the retried create finds the first one by its key.
func TestWorkerKilledDuringBootstrap(t *testing.T) {
	s := newStack(t)
	const owner, name, number = "acme", "slow-setup", 3
	slow := strings.Replace(autoSpec, "run: python3 --version", "run: sleep 2 && python3 --version", 1)
	slow = strings.Replace(slow, "autosleep: 2s", "autosleep: 10m", 1)
	s.gh.SetFile(owner, name, "main", ".drydock/preview.yml", slow)
	src := newRepo(t)
	pr := ghfixture.PR{Owner: owner, Repo: name, Number: number, HeadSHA: src.head(), HeadRef: "slow", CloneURL: src.dir}
	id := workflows.PreviewWorkflowID(owner, name, number)
	s.keepHistories(map[string]runMatcher{"preview-lifecycle-worker-killed-during-bootstrap": withID(id)})

	code, out := s.deliver("opened", pr, "slow-opened")
	require.Equal(t, http.StatusAccepted, code, out)
	// Wait until setup (the slow step) is running, then kill the worker.
	require.Eventually(t, func() bool { return s.emu.Stats().Executions >= 2 }, 30*time.Second, 20*time.Millisecond)
	s.stopWorker(syscall.SIGKILL)
	assert.Equal(t, 1, s.emu.Stats().LiveMachines)
	time.Sleep(500 * time.Millisecond)
	s.startWorker()

	st := s.waitFor(id, "ready after the crash", func(st workflows.PreviewStatus) bool { return st.Phase == workflows.PreviewReady })
	stats := s.emu.Stats()
	assert.EqualValues(t, 1, stats.Creates, "exactly one machine")
	assert.Equal(t, 1, stats.LiveMachines)
	assert.Equal(t, "running", machinePhase(s.emu, st.MachineID), "the preview runs on that one machine")
	assert.Equal(t, 1, stats.PreviewsLive, "exactly one preview")
	code, _ = s.get(owner, name, number, "/healthz")
	assert.Equal(t, http.StatusOK, code)

	code, _ = s.deliver("closed", pr, "slow-closed")
	require.Equal(t, http.StatusAccepted, code)
	s.waitClosed(id)
	assert.Equal(t, 0, s.emu.Stats().LiveMachines)
}
