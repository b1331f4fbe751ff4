package main

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/config/configtest"
)

// Every variable the binary reads is documented in README.md.
func TestConfigDocumentedInReadme(t *testing.T) {
	missing, err := config.MissingFromReadme(&Config{})
	require.NoError(t, err)
	assert.Empty(t, missing, "document these in README.md")
}

// --help lists every variable with its default.
func TestHelpListsEveryVariable(t *testing.T) {
	help := configtest.Help(t)
	assert.Empty(t, configtest.HelpMissing(t, help, &Config{}), "--help must list these with their defaults:\n%s", help)
}

// A bad setting stops the server at start with an error naming the variable.
func TestConfigValidationNamesTheVariable(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"GITHUB_WEBHOOK_SECRET": ""}, "GITHUB_WEBHOOK_SECRET"},
		{map[string]string{"DRYDOCK_INSECURE_DEV": "maybe"}, "DRYDOCK_INSECURE_DEV"},
		{map[string]string{"WEBHOOK_ADDR": "8080"}, "WEBHOOK_ADDR"},
		{map[string]string{"WEBHOOK_METRICS_ADDR": "localhost"}, "WEBHOOK_METRICS_ADDR"},
		{map[string]string{"WEBHOOK_METRICS_ADDR": busy.Addr().String()}, "WEBHOOK_METRICS_ADDR"},
		{map[string]string{"WEBHOOK_SHUTDOWN_TIMEOUT": "0s"}, "WEBHOOK_SHUTDOWN_TIMEOUT"},
		{map[string]string{"PREVIEW_REPOS": "octo/hello,not-a-repo"}, "PREVIEW_REPOS"},
		{map[string]string{"PREVIEW_REQUIRE_LABEL": "true", "PREVIEW_FORK_LABEL": ""}, "PREVIEW_FORK_LABEL"},
		{map[string]string{"RUNNER_POOLS": "{not json"}, "RUNNER_POOLS"},
		{map[string]string{"RUNNER_POOLS_FILE": "/nonexistent/pools.yml"}, "RUNNER_POOLS_FILE"},
		{map[string]string{"TEMPORAL_TLS_CA_FILE": "/nonexistent/ca.pem"}, "TEMPORAL_TLS_CA_FILE"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			configtest.IsolateEnv(t, &Config{})
			t.Setenv("GITHUB_WEBHOOK_SECRET", "webhook-secret-value")
			t.Setenv("WEBHOOK_ADDR", "127.0.0.1:0")
			t.Setenv("WEBHOOK_METRICS_ADDR", "127.0.0.1:0")
			t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			errc := make(chan error, 1)
			go func() { errc <- run(Config{}) }()
			var err error
			select {
			case err = <-errc:
			case <-time.After(20 * time.Second):
				t.Fatalf("run() accepted %v and started serving", tc.env)
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "webhook-secret-value")
		})
	}
}

func TestMain(m *testing.M) { configtest.RunMain(m, main) }
