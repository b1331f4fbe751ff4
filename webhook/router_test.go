package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/intake"
)

type noTemporal struct{}

func (noTemporal) SignalWithStartWorkflow(context.Context, string, string, any, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	panic("not expected")
}
func (noTemporal) SignalWorkflow(context.Context, string, string, string, any) error {
	panic("not expected")
}

func TestPolicyFromEnvironment(t *testing.T) {
	for _, k := range []string{"PREVIEW_FORK_LABEL", "PREVIEW_REQUIRE_LABEL", "PREVIEW_DRAFTS", "PREVIEW_REPOS"} {
		t.Setenv(k, "") // restored after the test
		require.NoError(t, os.Unsetenv(k))
	}
	var cfg Config
	require.NoError(t, config.Load(&cfg))
	assert.Equal(t, intake.PreviewPolicy{Label: "preview"}, cfg.policy(), "defaults")

	t.Setenv("PREVIEW_FORK_LABEL", "safe to preview")
	t.Setenv("PREVIEW_REQUIRE_LABEL", "true")
	t.Setenv("PREVIEW_DRAFTS", "true")
	t.Setenv("PREVIEW_REPOS", "octo/hello, octo/world")
	cfg = Config{}
	require.NoError(t, config.Load(&cfg))
	assert.Equal(t, intake.PreviewPolicy{Label: "safe to preview", RequireLabel: true, Drafts: true, Repos: []string{"octo/hello", " octo/world"}}, cfg.policy())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := newRouter(cfg, noTemporal{}, log)
	require.NoError(t, err)
	res, err := r.Route(context.Background(), intake.Event{Name: "ping"})
	require.NoError(t, err)
	assert.Equal(t, intake.Result{Status: http.StatusOK, Reason: "pong"}, res)

	cfg.ForkLabel = ""
	_, err = newRouter(cfg, noTemporal{}, log)
	assert.ErrorContains(t, err, "PREVIEW_FORK_LABEL is empty")
	cfg.RequireLabel = false
	cfg.Repos = []string{"hello"}
	_, err = newRouter(cfg, noTemporal{}, log)
	assert.ErrorContains(t, err, "PREVIEW_REPOS")
}
