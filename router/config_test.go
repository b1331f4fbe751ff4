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

// A bad setting stops the router at start with an error naming the variable.
func TestConfigValidationNamesTheVariable(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	configtest.Rejects(t, &Config{}, map[string]string{"ROUTER_ADDR": "127.0.0.1:0", "ROUTER_METRICS_ADDR": "127.0.0.1:0", "TEMPORAL_ADDRESS": "127.0.0.1:1"}, "", func() error { return run(Config{}) }, []configtest.Rejection{
		{Env: map[string]string{"PREVIEW_DEFAULT_REPO": "not-a-repo"}, Want: "PREVIEW_DEFAULT_REPO"},
		{Env: map[string]string{"PREVIEW_DOMAIN": "http://preview.localhost"}, Want: "PREVIEW_DOMAIN"},
		{Env: map[string]string{"ROUTER_AWAKE_TTL": "0s"}, Want: "ROUTER_AWAKE_TTL"},
		{Env: map[string]string{"ROUTER_WAKE_TIMEOUT": "soon"}, Want: "ROUTER_WAKE_TIMEOUT"},
		{Env: map[string]string{"ROUTER_TOUCH_EVERY": "-1m"}, Want: "ROUTER_TOUCH_EVERY"},
		{Env: map[string]string{"ROUTER_SHUTDOWN_TIMEOUT": "0s"}, Want: "ROUTER_SHUTDOWN_TIMEOUT"},
		{Env: map[string]string{"ROUTER_ADDR": "8090"}, Want: "ROUTER_ADDR"},
		{Env: map[string]string{"ROUTER_ADDR": busy.Addr().String()}, Want: "ROUTER_ADDR"},
		{Env: map[string]string{"ROUTER_METRICS_ADDR": busy.Addr().String()}, Want: "ROUTER_METRICS_ADDR"},
		{Env: map[string]string{"TEMPORAL_API_KEY": "key with spaces\n"}, Want: "TEMPORAL_API_KEY"},
		{Env: map[string]string{"LOG_LEVEL": "loud"}, Want: "LOG_LEVEL"},
		{Env: map[string]string{"ROUTER_GITHUB_CLIENT_ID": "cid", "ROUTER_SESSION_KEY": "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"}, Want: "ROUTER_GITHUB_CLIENT_SECRET"},
		{Env: map[string]string{"ROUTER_GITHUB_CLIENT_ID": "cid", "ROUTER_GITHUB_CLIENT_SECRET": "s", "ROUTER_SESSION_KEY": "short"}, Want: "ROUTER_SESSION_KEY"},
		{Env: map[string]string{"ROUTER_GITHUB_CLIENT_SECRET": "s"}, Want: "ROUTER_GITHUB_CLIENT_ID"},
		{Env: map[string]string{"ROUTER_GITHUB_CLIENT_ID": "cid", "ROUTER_GITHUB_CLIENT_SECRET": "s", "ROUTER_SESSION_KEY": "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", "ROUTER_AUTH_URL": "http://auth.example.com"}, Want: "ROUTER_AUTH_URL"},
		{Env: map[string]string{"ROUTER_AUTH_CACHE_TTL": "0s"}, Want: "ROUTER_AUTH_CACHE_TTL"},
		{Env: map[string]string{"ROUTER_TRUSTED_PROXIES": "10.0.0.0/8,load-balancer"}, Want: "ROUTER_TRUSTED_PROXIES"},
		{Env: map[string]string{"ROUTER_COLD_RATE": "-1"}, Want: "ROUTER_COLD_RATE"},
		{Env: map[string]string{"ROUTER_COLD_RATE": "NaN"}, Want: "ROUTER_COLD_RATE"},
		{Env: map[string]string{"ROUTER_COLD_BURST": "0"}, Want: "ROUTER_COLD_BURST"},
		{Env: map[string]string{"ROUTER_MAX_CONCURRENT_WAKES": "-5"}, Want: "ROUTER_MAX_CONCURRENT_WAKES"},
		{Env: map[string]string{"ROUTER_UPSTREAM_HEADER_TIMEOUT": "0s"}, Want: "ROUTER_UPSTREAM_HEADER_TIMEOUT"},
		{Env: map[string]string{"ROUTER_UPGRADE_IDLE_TIMEOUT": "-1m"}, Want: "ROUTER_UPGRADE_IDLE_TIMEOUT"},
	})
}

func TestMain(m *testing.M) { configtest.RunMain(m, main) }
