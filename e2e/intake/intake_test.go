// Package intake tests the webhook server binary's front door on a whole
// Drydock (the real worker, webhook and router binaries, a real Temporal dev
// server, the Dedalus emulator and the GitHub API double): who may use
// Drydock (DRYDOCK_ALLOWED_OWNERS), checked before anything is started; what
// unauthenticated clients can hold; the Host check of DRYDOCK_INSECURE_DEV.
package intake

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/internal/testing/testenv"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

const (
	allowedOrg = "Allowed-Org" // listed in lower case: owners compare case-insensitively
	evilOrg    = "evil-org"    // not listed; its installation 99 is
	repoName   = "shop"
	spec       = `
machine: {vcpu: 1, memory_mib: 512, storage_gib: 2, autosleep: 1m}
app: {port: 3000, health_path: /healthz, health_timeout: 60s}
start: {command: [python3, examples/previewapp/app.py]}
`
)

var labels = []string{"self-hosted", "linux", "allow"}

func start(t *testing.T, opts harness.Options) (context.Context, *harness.Harness) {
	t.Helper()
	cli, err := testenv.TemporalCLI()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	opts.Dir, opts.TemporalCLI = t.TempDir(), cli
	opts.Emulator = emulator.Config{BootDelay: 100 * time.Millisecond, WakeDelay: 100 * time.Millisecond, SleepDelay: 20 * time.Millisecond}
	h, err := harness.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("webhook log tail:\n%s", h.LogTail("webhook", 4000))
		}
	})
	return ctx, h
}

// exists reports whether a workflow with this ID was ever started.
func exists(ctx context.Context, t *testing.T, h *harness.Harness, id string) bool {
	t.Helper()
	_, err := h.TC.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false
	}
	require.NoError(t, err, id)
	return true
}

// Events of owners and installations that are not on DRYDOCK_ALLOWED_OWNERS
// start no preview and no runner job, though a pool takes the job's labels
// and the repository has a preview spec; listed ones do.
func TestOnlyAllowedOwnersStartAnything(t *testing.T) {
	ctx, h := start(t, harness.Options{
		AllowedOwners: "allowed-org,installation:99",
		Pools: func(h *harness.Harness) (string, error) {
			return h.FakeRunnerPools(harness.FakeRunnerPool{Name: "evil", Org: evilOrg, Repo: repoName, Labels: labels,
				VCPU: 1, MemoryMiB: 512, StorageGiB: 2, Autosleep: "1m", MaxMachines: 1, PickupTimeout: "30s"})
		},
	})
	repo, err := harness.NewGitRepo(filepath.Join(t.TempDir(), "src"))
	require.NoError(t, err)
	sha, err := repo.Commit("base")
	require.NoError(t, err)
	for _, owner := range []string{allowedOrg, evilOrg} {
		h.GH.SetFile(owner, repoName, "main", ".drydock/preview.yml", spec)
		h.GH.SetPullRequest(owner, repoName, githubtest.PullRequest{Number: 1, State: "open", HeadSHA: sha, HeadRef: "feature"})
	}
	pr := func(owner string) []byte {
		b, err := h.PullRequest("opened", ghfixture.PR{Owner: owner, Repo: repoName, Number: 1, HeadSHA: sha, HeadRef: "feature", CloneURL: repo.Dir})
		require.NoError(t, err)
		return b
	}
	job := func(id, installation int64) []byte {
		b, err := h.WorkflowJob("queued", ghfixture.Job{ID: id, RunID: id * 10, Name: "build", Owner: evilOrg, Repo: repoName, Org: evilOrg,
			Labels: labels, InstallationID: installation})
		require.NoError(t, err)
		return b
	}

	// Refused: 200 (GitHub shows the delivery as delivered), nothing started.
	code, err := h.Deliver(ctx, "pull_request", "evil-pr", pr(evilOrg))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	code, err = h.Deliver(ctx, "workflow_job", "evil-job", job(9001, 0))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	assert.False(t, exists(ctx, t, h, workflows.PreviewWorkflowID(evilOrg, repoName, 1)), "no preview for an owner not on the list")
	assert.False(t, exists(ctx, t, h, runnerapi.JobWorkflowID(9001)), "no runner job for an owner not on the list")
	assert.False(t, exists(ctx, t, h, runnerapi.PoolWorkflowID("evil")), "no runner pool woken")

	// Accepted: a listed owner (other case), a listed installation.
	code, err = h.Deliver(ctx, "pull_request", "allowed-pr", pr(allowedOrg))
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, code)
	assert.True(t, exists(ctx, t, h, workflows.PreviewWorkflowID(allowedOrg, repoName, 1)))
	code, err = h.Deliver(ctx, "workflow_job", "installed-job", job(9002, 99))
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, code)
	assert.True(t, exists(ctx, t, h, runnerapi.JobWorkflowID(9002)))

	checkRefusalsCounted(t, h)
}

// checkRefusalsCounted checks that the webhook's metrics count the two
// refused deliveries as ignored, owner_not_allowed.
func checkRefusalsCounted(t *testing.T, h *harness.Harness) {
	resp, err := http.Get(h.WebhookAdminURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, want := range []string{
		`drydock_webhook_deliveries_total{action="opened",event="pull_request",outcome="ignored",reason="owner_not_allowed"} 1`,
		`drydock_webhook_deliveries_total{action="queued",event="workflow_job",outcome="ignored",reason="owner_not_allowed"} 1`,
	} {
		assert.True(t, strings.Contains(string(text), want), "metrics lack %s", want)
	}
}

// pullRequest is an opened delivery for owner/shop#number with a preview
// spec on the double.
func pullRequest(t *testing.T, h *harness.Harness, owner string, number int) []byte {
	t.Helper()
	repo, err := harness.NewGitRepo(filepath.Join(t.TempDir(), "src"))
	require.NoError(t, err)
	sha, err := repo.Commit("base")
	require.NoError(t, err)
	h.GH.SetFile(owner, repoName, "main", ".drydock/preview.yml", spec)
	h.GH.SetPullRequest(owner, repoName, githubtest.PullRequest{Number: number, State: "open", HeadSHA: sha, HeadRef: "feature"})
	b, err := h.PullRequest("opened", ghfixture.PR{Owner: owner, Repo: repoName, Number: number, HeadSHA: sha, HeadRef: "feature", CloneURL: repo.Dir})
	require.NoError(t, err)
	return b
}

// post sends an unsigned delivery with the given Host header.
func post(ctx context.Context, t *testing.T, h *harness.Harness, host string, body []byte) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.WebhookURL+"/webhooks/github", bytes.NewReader(body))
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "pull_request")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// The webhook binary in DRYDOCK_INSECURE_DEV mode (unsigned deliveries, as
// on a developer's machine) refuses a DNS-rebinding request: Host:
// evil.example gets 421 and no preview is started; the same delivery
// addressed to 127.0.0.1 starts one.
func TestInsecureDevWebhookRefusesRebinding(t *testing.T) {
	ctx, h := start(t, harness.Options{WebhookEnv: []string{"GITHUB_WEBHOOK_SECRET=", "DRYDOCK_INSECURE_DEV=true"}})
	body := pullRequest(t, h, allowedOrg, 2)
	id := workflows.PreviewWorkflowID(allowedOrg, repoName, 2)
	for _, host := range []string{"evil.example", "evil.example:8080", "192.168.1.20"} {
		assert.Equal(t, http.StatusMisdirectedRequest, post(ctx, t, h, host, body), host)
	}
	assert.False(t, exists(ctx, t, h, id), "nothing started by a rebinding request")
	assert.Equal(t, http.StatusAccepted, post(ctx, t, h, "", body), "addressed to 127.0.0.1:<port>")
	assert.True(t, exists(ctx, t, h, id))
}

// Forty slow unsigned uploads against the webhook binary hold at most
// WEBHOOK_MAX_CONCURRENT_BODIES reading slots (drydock_webhook_bodies_reading)
// and the rest are refused with 503; once they are gone a signed delivery is
// accepted; an oversized one gets 413 and starts nothing.
func TestSlowUploadsCannotExhaustTheWebhook(t *testing.T) {
	const slots, uploads = 4, 40
	ctx, h := start(t, harness.Options{WebhookEnv: []string{fmt.Sprintf("WEBHOOK_MAX_CONCURRENT_BODIES=%d", slots)}})
	addr := strings.TrimPrefix(h.WebhookURL, "http://")
	refused := make(chan int, uploads)
	var conns []net.Conn
	for range uploads {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, c)
		_, err = fmt.Fprintf(c, "POST /webhooks/github HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-GitHub-Event: pull_request\r\n"+
			"Content-Length: %d\r\n\r\n{\"action\":\"", addr, 1<<20)
		require.NoError(t, err)
		go func() {
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				resp.Body.Close()
				refused <- resp.StatusCode
			}
		}()
	}
	for range uploads - slots {
		select {
		case code := <-refused:
			assert.Equal(t, http.StatusServiceUnavailable, code)
		case <-ctx.Done():
			t.Fatal("uploads past the cap were not refused")
		}
	}
	assert.Equal(t, fmt.Sprint(slots), metric(t, h, "drydock_webhook_bodies_reading"), "slots in use: the cap, no more")
	for _, c := range conns {
		c.Close()
	}
	require.Eventually(t, func() bool { return metric(t, h, "drydock_webhook_bodies_reading") == "0" }, 30*time.Second, 50*time.Millisecond)

	body := pullRequest(t, h, allowedOrg, 3)
	code, err := h.Deliver(ctx, "pull_request", "after-the-flood", body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, code, "a signed delivery is accepted afterwards")
	assert.True(t, exists(ctx, t, h, workflows.PreviewWorkflowID(allowedOrg, repoName, 3)))

	big := pullRequest(t, h, allowedOrg, 4)
	big = bytes.TrimSpace(big)
	big = append(big[:len(big)-1], []byte(`,"padding":"`+strings.Repeat("x", 1<<20)+`"}`)...) // still valid JSON, just too large
	code, err = h.Deliver(ctx, "pull_request", "oversized", big)
	require.NoError(t, err)
	assert.Equal(t, http.StatusRequestEntityTooLarge, code)
	assert.False(t, exists(ctx, t, h, workflows.PreviewWorkflowID(allowedOrg, repoName, 4)), "an oversized delivery starts nothing")
}

// metric is the value of an unlabelled series on the webhook's /metrics.
func metric(t *testing.T, h *harness.Harness, name string) string {
	t.Helper()
	resp, err := http.Get(h.WebhookAdminURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}
