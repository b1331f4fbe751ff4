package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-github/v62/github"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/examples/previewapp"
	"github.com/drydock-dev/drydock/internal/intake"
)

// recordingWebhook is Drydock's real intake (signature checks included) in
// front of a router that records what it was given.
func recordingWebhook(t *testing.T, secret string) (*httptest.Server, *[]intake.Event) {
	t.Helper()
	var got []intake.Event
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Router: intake.RouterFunc(func(_ context.Context, ev intake.Event) (intake.Result, error) {
			got = append(got, ev)
			return intake.Result{Status: http.StatusAccepted, Reason: "recorded"}, nil
		})})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, &got
}

// TestDemoWorksFromAnyDirectory plays open, push and close from a folder
// that is not a Drydock checkout: the demo app and the payloads are in the
// binary.
func TestDemoWorksFromAnyDirectory(t *testing.T) {
	t.Chdir(t.TempDir())
	srv, got := recordingWebhook(t, "s3cret")
	cfg := Config{WebhookURL: srv.URL + "/webhooks/github", WebhookSecret: "s3cret"}
	ctx := context.Background()

	var out bytes.Buffer
	require.NoError(t, demoCmd(ctx, cfg, "open", []string{"-number", "4"}, &out), out.String())
	repo, err := filepath.Abs(".dev/demo-repo")
	require.NoError(t, err)
	app, err := os.ReadFile(filepath.Join(repo, previewapp.AppPath))
	require.NoError(t, err)
	assert.Equal(t, previewapp.App, app, "the demo repository holds the demo app")
	head := func() string {
		b, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}
	first := head()

	require.NoError(t, demoCmd(ctx, cfg, "push", []string{"-number", "4"}, &out), out.String())
	second := head()
	assert.NotEqual(t, first, second, "push commits")
	require.NoError(t, demoCmd(ctx, cfg, "close", []string{"-number", "4"}, &out), out.String())

	require.Len(t, *got, 3)
	for i, want := range []struct{ action, sha string }{{"opened", first}, {"synchronize", second}, {"closed", second}} {
		ev := (*got)[i]
		assert.Equal(t, "pull_request", ev.Name)
		var pe github.PullRequestEvent
		require.NoError(t, json.Unmarshal(ev.Payload, &pe))
		assert.Equal(t, want.action, pe.GetAction())
		assert.Equal(t, 4, pe.GetNumber())
		assert.Equal(t, "drydock-demo/previewapp", pe.GetRepo().GetFullName())
		assert.Equal(t, want.sha, pe.GetPullRequest().GetHead().GetSHA())
		assert.Equal(t, repo, pe.GetPullRequest().GetHead().GetRepo().GetCloneURL())
	}
	assert.Contains(t, out.String(), "preview:drydock-demo/previewapp:4")
}

func TestWebhookSendDefaultsToAPing(t *testing.T) {
	t.Chdir(t.TempDir())
	srv, got := recordingWebhook(t, "s3cret")
	cfg := Config{WebhookURL: srv.URL + "/webhooks/github", WebhookSecret: "s3cret"}
	var out bytes.Buffer
	require.NoError(t, sendWebhook(context.Background(), cfg, []string{"-delivery", "d-ping"}, &out))
	assert.Contains(t, out.String(), "202 Accepted ping (delivery d-ping)")
	require.Len(t, *got, 1)
	ev := (*got)[0]
	assert.Equal(t, "ping", ev.Name)
	var ping github.PingEvent
	require.NoError(t, json.Unmarshal(ev.Payload, &ping), "a ping as GitHub sends it")
	assert.EqualValues(t, 1, ping.GetHookID())
	assert.NotEmpty(t, ping.GetZen())
}
