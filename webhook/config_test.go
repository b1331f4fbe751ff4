package main

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/config/configtest"
)

// Every variable the binary reads is documented in docs/configuration.md, and --help
// lists each with its default.
func TestConfigDocumented(t *testing.T) { configtest.Documented(t, &Config{}) }

// A bad setting stops the server at start with an error naming the variable.
func TestConfigValidationNamesTheVariable(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	configtest.Rejects(t, &Config{}, map[string]string{"GITHUB_WEBHOOK_SECRET": "webhook-secret-value", "WEBHOOK_ADDR": "127.0.0.1:0", "WEBHOOK_METRICS_ADDR": "127.0.0.1:0", "TEMPORAL_ADDRESS": "127.0.0.1:1", "DRYDOCK_ALLOWED_OWNERS": "acme"}, "webhook-secret-value", func() error { return run(Config{}) }, []configtest.Rejection{
		{Env: map[string]string{"GITHUB_WEBHOOK_SECRET": ""}, Want: "GITHUB_WEBHOOK_SECRET"},
		{Env: map[string]string{"DRYDOCK_INSECURE_DEV": "maybe"}, Want: "DRYDOCK_INSECURE_DEV"},
		{Env: map[string]string{"DRYDOCK_INSECURE_DEV": "true", "GITHUB_WEBHOOK_SECRET": "", "WEBHOOK_ADDR": "0.0.0.0:0"}, Want: "DRYDOCK_INSECURE_DEV=true accepts deliveries from anyone"},
		{Env: map[string]string{"DRYDOCK_INSECURE_DEV": "true", "GITHUB_WEBHOOK_SECRET": "", "WEBHOOK_ADDR": ":0"}, Want: "DRYDOCK_INSECURE_DEV"},
		{Env: map[string]string{"DRYDOCK_INSECURE_DEV": "true", "WEBHOOK_ADDR": "192.168.1.20:0"}, Want: "WEBHOOK_ADDR=\"192.168.1.20:0\" is not a loopback address"},
		{Env: map[string]string{"DRYDOCK_INSECURE_DEV": "true", "GITHUB_WEBHOOK_SECRET": "", "WEBHOOK_ADDR": "[::]:0"}, Want: "DRYDOCK_INSECURE_DEV"},
		{Env: map[string]string{"DRYDOCK_ALLOWED_OWNERS": ""}, Want: "DRYDOCK_ALLOWED_OWNERS is empty"},
		{Env: map[string]string{"DRYDOCK_ALLOWED_OWNERS": " "}, Want: "DRYDOCK_ALLOWED_OWNERS is empty"},
		{Env: map[string]string{"DRYDOCK_ALLOWED_OWNERS": "acme,*"}, Want: "DRYDOCK_ALLOWED_OWNERS"},
		{Env: map[string]string{"DRYDOCK_ALLOWED_OWNERS": "acme/shop"}, Want: "DRYDOCK_ALLOWED_OWNERS"},
		{Env: map[string]string{"DRYDOCK_ALLOWED_OWNERS": "installation:abc"}, Want: "DRYDOCK_ALLOWED_OWNERS"},
		{Env: map[string]string{"DRYDOCK_ALLOWED_OWNERS": "acme,,octo"}, Want: "DRYDOCK_ALLOWED_OWNERS"},
		{Env: map[string]string{"WEBHOOK_MAX_BODY_BYTES": "0"}, Want: "WEBHOOK_MAX_BODY_BYTES"},
		{Env: map[string]string{"WEBHOOK_MAX_BODY_BYTES": "30000000"}, Want: "WEBHOOK_MAX_BODY_BYTES"},
		{Env: map[string]string{"WEBHOOK_MAX_CONCURRENT_BODIES": "0"}, Want: "WEBHOOK_MAX_CONCURRENT_BODIES"},
		{Env: map[string]string{"WEBHOOK_ADDR": "8080"}, Want: "WEBHOOK_ADDR"},
		{Env: map[string]string{"WEBHOOK_METRICS_ADDR": "localhost"}, Want: "WEBHOOK_METRICS_ADDR"},
		{Env: map[string]string{"WEBHOOK_METRICS_ADDR": busy.Addr().String()}, Want: "WEBHOOK_METRICS_ADDR"},
		{Env: map[string]string{"WEBHOOK_SHUTDOWN_TIMEOUT": "0s"}, Want: "WEBHOOK_SHUTDOWN_TIMEOUT"},
		{Env: map[string]string{"PREVIEW_REPOS": "octo/hello,not-a-repo"}, Want: "PREVIEW_REPOS"},
		{Env: map[string]string{"PREVIEW_REQUIRE_LABEL": "true", "PREVIEW_FORK_LABEL": ""}, Want: "PREVIEW_FORK_LABEL"},
		{Env: map[string]string{"RUNNER_POOLS": "{not json"}, Want: "RUNNER_POOLS"},
		{Env: map[string]string{"RUNNER_POOLS_FILE": "/nonexistent/pools.yml"}, Want: "RUNNER_POOLS_FILE"},
		{Env: map[string]string{"TEMPORAL_TLS_CA_FILE": "/nonexistent/ca.pem"}, Want: "TEMPORAL_TLS_CA_FILE"},
		{Env: map[string]string{"LOG_LEVEL": "loud"}, Want: "LOG_LEVEL"},
	})
}

func TestMain(m *testing.M) { configtest.RunMain(m, main) }
