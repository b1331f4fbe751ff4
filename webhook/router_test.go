package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
)

type noTemporal struct{}

func (noTemporal) SignalWithStartWorkflow(context.Context, string, string, any, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	panic("not expected")
}
func (noTemporal) SignalWorkflow(context.Context, string, string, string, any) error {
	panic("not expected")
}
func (noTemporal) ExecuteWorkflow(context.Context, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	panic("not expected")
}

func TestPolicyFromEnvironment(t *testing.T) {
	for _, k := range []string{"PREVIEW_FORK_LABEL", "PREVIEW_REQUIRE_LABEL", "PREVIEW_DRAFTS", "PREVIEW_REPOS", "PREVIEW_SKIP_BOTS"} {
		t.Setenv(k, "") // restored after the test
		require.NoError(t, os.Unsetenv(k))
	}
	var cfg Config
	require.NoError(t, config.Load(&cfg))
	assert.Equal(t, intake.PreviewPolicy{Label: "preview", SkipBots: true}, cfg.policy(), "defaults")

	t.Setenv("PREVIEW_FORK_LABEL", "safe to preview")
	t.Setenv("PREVIEW_REQUIRE_LABEL", "true")
	t.Setenv("PREVIEW_DRAFTS", "true")
	t.Setenv("PREVIEW_REPOS", "octo/hello, octo/world")
	t.Setenv("PREVIEW_SKIP_BOTS", "false")
	cfg = Config{}
	require.NoError(t, config.Load(&cfg))
	assert.Equal(t, intake.PreviewPolicy{Label: "safe to preview", RequireLabel: true, Drafts: true, Repos: []string{"octo/hello", " octo/world"}}, cfg.policy())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := newRouter(cfg, noTemporal{}, log)
	require.NoError(t, err)
	res, err := r.Route(context.Background(), intake.Event{Name: "ping"})
	require.NoError(t, err)
	assert.Equal(t, intake.Result{Status: http.StatusOK, Reason: "pong", Code: "ping"}, res)

	cfg.ForkLabel = ""
	_, err = newRouter(cfg, noTemporal{}, log)
	assert.ErrorContains(t, err, "PREVIEW_FORK_LABEL is empty")
	cfg.RequireLabel = false
	cfg.Repos = []string{"hello"}
	_, err = newRouter(cfg, noTemporal{}, log)
	assert.ErrorContains(t, err, "PREVIEW_REPOS")
}

// startRecorder fails every start, remembering that one was asked for.
type startRecorder struct {
	noTemporal
	started *string
}

func (s startRecorder) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	*s.started = o.ID
	return nil, errors.New("recorded")
}

func TestRunnerPoolsFromEnvironment(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	queued := func(labels ...string) intake.Event {
		body, err := ghfixture.WorkflowJob("queued",
			ghfixture.Job{ID: 42, RunID: 1, Name: "build", Owner: "acme", Repo: "shop", Labels: labels})
		require.NoError(t, err)
		return intake.Event{Name: "workflow_job", DeliveryID: "d-" + strings.Join(labels, "-"), Action: "queued", Payload: body}
	}
	for _, k := range []string{"RUNNER_POOLS_FILE", "RUNNER_POOLS"} {
		t.Setenv(k, "")
		require.NoError(t, os.Unsetenv(k))
	}
	var cfg Config
	require.NoError(t, config.Load(&cfg))
	assert.Empty(t, cfg.RunnerPoolsFile+cfg.RunnerPools, "no pools by default")
	r, err := newRouter(cfg, noTemporal{}, log)
	require.NoError(t, err)
	res, err := r.Route(context.Background(), queued("self-hosted", "linux"))
	require.NoError(t, err)
	assert.Equal(t, intake.Result{Status: http.StatusOK, Reason: "no runner pool takes labels [self-hosted, linux]", Code: "no_pool"}, res)

	t.Setenv("RUNNER_POOLS", `[{"name":"ci","labels":["self-hosted","linux"],"scope":{"org":"acme"},"repositories":["acme/shop"],"runner_group_id":2}]`)
	cfg = Config{}
	require.NoError(t, config.Load(&cfg))
	var started string
	r, err = newRouter(cfg, startRecorder{started: &started}, log)
	require.NoError(t, err)
	res, err = r.Route(context.Background(), queued("ubuntu-latest"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.Status)
	_, err = r.Route(context.Background(), queued("self-hosted", "linux"))
	assert.ErrorContains(t, err, "recorded")
	assert.Equal(t, "runner-job:42", started, "workflow_job is routed to the runner workflows")

	t.Setenv("RUNNER_POOLS", `[{"name":"ci","labels":[]}]`)
	cfg = Config{}
	require.NoError(t, config.Load(&cfg))
	_, err = newRouter(cfg, noTemporal{}, log)
	assert.ErrorContains(t, err, "RUNNER_POOLS: invalid runner pools configuration")

	file := filepath.Join(t.TempDir(), "pools.yml")
	require.NoError(t, os.WriteFile(file, []byte("pools:\n  - {name: ci, labels: [self-hosted], scope: {org: acme}, owners: [acme], runner_group_id: 2}\n"), 0o600))
	t.Setenv("RUNNER_POOLS_FILE", file)
	cfg = Config{}
	require.NoError(t, config.Load(&cfg))
	_, err = newRouter(cfg, noTemporal{}, log)
	assert.ErrorContains(t, err, "set RUNNER_POOLS_FILE or RUNNER_POOLS, not both")
	t.Setenv("RUNNER_POOLS", "")
	cfg = Config{}
	require.NoError(t, config.Load(&cfg))
	_, err = newRouter(cfg, noTemporal{}, log)
	require.NoError(t, err)

	t.Setenv("RUNNER_POOLS_FILE", file+".missing")
	cfg = Config{}
	require.NoError(t, config.Load(&cfg))
	_, err = newRouter(cfg, noTemporal{}, log)
	assert.ErrorContains(t, err, "RUNNER_POOLS_FILE=")
}
