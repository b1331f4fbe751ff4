package main

import (
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

// A bad setting stops the worker at start with an error naming the
// variable, before it connects to anything.
func TestConfigValidationNamesTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"DEDALUS_API_KEY": ""}, "DEDALUS_API_KEY"},
		{map[string]string{"DEDALUS_BASE_URL": "ftp://dedalus"}, "DEDALUS_BASE_URL"},
		{map[string]string{"PREVIEW_STALE_AFTER": "-1h"}, "PREVIEW_STALE_AFTER"},
		{map[string]string{"RECONCILE_EVERY": "often"}, "RECONCILE_EVERY"},
		{map[string]string{"RECONCILE_GRACE": "-5m"}, "RECONCILE_GRACE"},
		{map[string]string{"WORKER_STOP_TIMEOUT": "-1s"}, "WORKER_STOP_TIMEOUT"},
		{map[string]string{"WORKER_METRICS_ADDR": "9090"}, "WORKER_METRICS_ADDR"},
		{map[string]string{"PREVIEW_PUBLIC_URL": "preview.example.com"}, "PREVIEW_PUBLIC_URL"},
		{map[string]string{"PREVIEW_PUBLIC_URL": "https://preview.example.com"}, "PREVIEW_PUBLIC_URL"},
		{map[string]string{"PREVIEW_KEEP_FAILED": "maybe"}, "PREVIEW_KEEP_FAILED"},
		{map[string]string{"PREVIEW_DEFAULT_SPEC": "/nonexistent/preview.yml"}, "PREVIEW_DEFAULT_SPEC"},
		{map[string]string{"TEMPORAL_UI_URL": "localhost:8233"}, "TEMPORAL_UI_URL"},
		{map[string]string{"TEMPORAL_TLS_CERT_FILE": "/nonexistent/cert.pem"}, "TEMPORAL_TLS_KEY_FILE"},
		{map[string]string{"TEMPORAL_ADDRESS": ""}, "TEMPORAL_ADDRESS"},
		{map[string]string{"GITHUB_APP_ID": "12"}, "GITHUB_APP_PRIVATE_KEY_FILE"},
		{map[string]string{"GITHUB_TOKEN": "t", "GITHUB_APP_ID": "12"}, "GITHUB_TOKEN"},
		{map[string]string{"RUNNER_POOLS": "{not json"}, "RUNNER_POOLS"},
		{map[string]string{"RUNNER_POOLS": `{"pools":[{"name":"linux","labels":["self-hosted"],"scope":{"kind":"org","org":"octo"},"machine":{"vcpu":2,"memory_mib":1024,"storage_gib":4}}]}`}, "GITHUB_TOKEN"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			configtest.IsolateEnv(t, &Config{})
			t.Setenv("DEDALUS_API_KEY", "dedalus-secret-key")
			t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1") // nothing listens: validation must fail first
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := run(Config{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "dedalus-secret-key")
		})
	}
}

func TestMain(m *testing.M) { configtest.RunMain(m, main) }
