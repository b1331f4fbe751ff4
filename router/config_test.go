package main

import (
	"net"
	"testing"

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

// A bad setting stops the router at start with an error naming the variable.
func TestConfigValidationNamesTheVariable(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"PREVIEW_DEFAULT_REPO": "not-a-repo"}, "PREVIEW_DEFAULT_REPO"},
		{map[string]string{"PREVIEW_DOMAIN": "http://preview.localhost"}, "PREVIEW_DOMAIN"},
		{map[string]string{"ROUTER_AWAKE_TTL": "0s"}, "ROUTER_AWAKE_TTL"},
		{map[string]string{"ROUTER_WAKE_TIMEOUT": "soon"}, "ROUTER_WAKE_TIMEOUT"},
		{map[string]string{"ROUTER_TOUCH_EVERY": "-1m"}, "ROUTER_TOUCH_EVERY"},
		{map[string]string{"ROUTER_SHUTDOWN_TIMEOUT": "0s"}, "ROUTER_SHUTDOWN_TIMEOUT"},
		{map[string]string{"ROUTER_ADDR": "8090"}, "ROUTER_ADDR"},
		{map[string]string{"ROUTER_ADDR": busy.Addr().String()}, "ROUTER_ADDR"},
		{map[string]string{"ROUTER_METRICS_ADDR": busy.Addr().String()}, "ROUTER_METRICS_ADDR"},
		{map[string]string{"TEMPORAL_API_KEY": "key with spaces\n"}, "TEMPORAL_API_KEY"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			configtest.IsolateEnv(t, &Config{})
			t.Setenv("ROUTER_ADDR", "127.0.0.1:0")
			t.Setenv("ROUTER_METRICS_ADDR", "127.0.0.1:0")
			t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := run(Config{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestMain(m *testing.M) { configtest.RunMain(m, main) }
