// Package intake tests the webhook server binary's front door on a whole
// Drydock (the real worker, webhook and router binaries, a real Temporal dev
// server, the Dedalus emulator and the GitHub API double): who may use
// Drydock (DRYDOCK_ALLOWED_OWNERS), checked before anything is started.
package intake

import (
	"context"
	"errors"
	"io"
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
	"github.com/drydock-dev/drydock/internal/githubtest"
	"github.com/drydock-dev/drydock/internal/harness"
	"github.com/drydock-dev/drydock/internal/testenv"
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
