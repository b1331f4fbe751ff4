package main

import (
	"testing"

	"github.com/drydock-dev/drydock/internal/config/configtest"
)

// Every variable the binary reads is documented in docs/configuration.md, and --help
// lists each with its default.
func TestConfigDocumented(t *testing.T) { configtest.Documented(t, &Config{}) }

// A bad setting stops the worker at start with an error naming the
// variable, before it connects to anything.
func TestConfigValidationNamesTheVariable(t *testing.T) {
	configtest.Rejects(t, &Config{}, map[string]string{"DEDALUS_API_KEY": "dedalus-secret-key", "TEMPORAL_ADDRESS": "127.0.0.1:1"}, "dedalus-secret-key", func() error { return run(Config{}) }, []configtest.Rejection{
		{Env: map[string]string{"DEDALUS_API_KEY": ""}, Want: "DEDALUS_API_KEY"},
		{Env: map[string]string{"DEDALUS_BASE_URL": "ftp://dedalus"}, Want: "DEDALUS_BASE_URL"},
		{Env: map[string]string{"PREVIEW_STALE_AFTER": "-1h"}, Want: "PREVIEW_STALE_AFTER"},
		{Env: map[string]string{"RECONCILE_EVERY": "often"}, Want: "RECONCILE_EVERY"},
		{Env: map[string]string{"RECONCILE_GRACE": "-5m"}, Want: "RECONCILE_GRACE"},
		{Env: map[string]string{"WORKER_STOP_TIMEOUT": "-1s"}, Want: "WORKER_STOP_TIMEOUT"},
		{Env: map[string]string{"WORKER_METRICS_ADDR": "9090"}, Want: "WORKER_METRICS_ADDR"},
		{Env: map[string]string{"WORKER_WORKFLOW_CACHE_SIZE": "0"}, Want: "WORKER_WORKFLOW_CACHE_SIZE"},
		{Env: map[string]string{"WORKER_GC_PERCENT": "5"}, Want: "WORKER_GC_PERCENT"},
		{Env: map[string]string{"WORKER_WORKFLOW_CACHE_SIZE": "lots"}, Want: "WORKER_WORKFLOW_CACHE_SIZE"},
		{Env: map[string]string{"PREVIEW_PUBLIC_URL": "preview.example.com"}, Want: "PREVIEW_PUBLIC_URL"},
		{Env: map[string]string{"PREVIEW_PUBLIC_URL": "https://preview.example.com"}, Want: "PREVIEW_PUBLIC_URL"},
		{Env: map[string]string{"PREVIEW_KEEP_FAILED": "maybe"}, Want: "PREVIEW_KEEP_FAILED"},
		{Env: map[string]string{"PREVIEW_DEFAULT_SPEC": "/nonexistent/preview.yml"}, Want: "PREVIEW_DEFAULT_SPEC"},
		{Env: map[string]string{"TEMPORAL_UI_URL": "localhost:8233"}, Want: "TEMPORAL_UI_URL"},
		{Env: map[string]string{"TEMPORAL_TLS_CERT_FILE": "/nonexistent/cert.pem"}, Want: "TEMPORAL_TLS_KEY_FILE"},
		{Env: map[string]string{"TEMPORAL_ADDRESS": ""}, Want: "TEMPORAL_ADDRESS"},
		{Env: map[string]string{"GITHUB_APP_ID": "12"}, Want: "GITHUB_APP_PRIVATE_KEY_FILE"},
		{Env: map[string]string{"GITHUB_TOKEN": "t", "GITHUB_APP_ID": "12"}, Want: "GITHUB_TOKEN"},
		{Env: map[string]string{"RUNNER_POOLS": "{not json"}, Want: "RUNNER_POOLS"},
		{Env: map[string]string{"RUNNER_POOLS": `{"pools":[{"name":"linux","labels":["self-hosted"],"scope":{"kind":"org","org":"octo"},"owners":["octo"],"runner_group_id":2,"machine":{"vcpu":2,"memory_mib":1024,"storage_gib":4}}]}`}, Want: "GITHUB_TOKEN"},
		{Env: map[string]string{"RUNNER_POOLS": `{"pools":[{"name":"linux","labels":["self-hosted"],"scope":{"kind":"org","org":"octo"},"owners":["octo"],"runner_group_id":2,"machine":{"vcpu":2,"memory_mib":1024,"storage_gib":4},"runner_command":["sh","-c","exec $HOME/actions-runner/run.sh --jitconfig \"$DRYDOCK_JIT_CONFIG\""]}]}`}, Want: "RUNNER_POOLS: pool linux: runner_command uses $DRYDOCK_JIT_CONFIG"},
		{Env: map[string]string{"LOG_LEVEL": "loud"}, Want: "LOG_LEVEL"},
		{Env: map[string]string{"PREVIEW_VISIBILITY": "everyone"}, Want: "PREVIEW_VISIBILITY"},
		{Env: map[string]string{"PREVIEW_VISIBILITY_MAX": "nobody"}, Want: "PREVIEW_VISIBILITY_MAX"},
		{Env: map[string]string{"PREVIEW_VISIBILITY_REPOS": "octo/docs"}, Want: "PREVIEW_VISIBILITY_REPOS"},
		{Env: map[string]string{"PREVIEW_VISIBILITY_REPOS": "octo=public"}, Want: "PREVIEW_VISIBILITY_REPOS"},
		{Env: map[string]string{"PREVIEW_VISIBILITY_REPOS": "octo/docs=open"}, Want: "PREVIEW_VISIBILITY_REPOS"},
		{Env: map[string]string{"PREVIEW_VISIBILITY_REPOS": "octo/docs=org,Octo/Docs=public"}, Want: "PREVIEW_VISIBILITY_REPOS"},
		{Env: map[string]string{"PREVIEW_VISIBILITY": "public", "PREVIEW_VISIBILITY_MAX": "org"}, Want: "PREVIEW_VISIBILITY_MAX"},
		{Env: map[string]string{"PREVIEW_VISIBILITY_REPOS": "octo/docs=public", "PREVIEW_VISIBILITY_MAX": "org"}, Want: "PREVIEW_VISIBILITY_REPOS"},
		{Env: map[string]string{"PREVIEW_MAX_OPEN": "-1"}, Want: "PREVIEW_MAX_OPEN"},
		{Env: map[string]string{"PREVIEW_MAX_OPEN_PER_REPO": "ten"}, Want: "PREVIEW_MAX_OPEN_PER_REPO"},
		{Env: map[string]string{"PREVIEW_MAX_VCPU": "-2"}, Want: "PREVIEW_MAX_VCPU"},
		{Env: map[string]string{"PREVIEW_MAX_MEMORY_MIB": "-1"}, Want: "PREVIEW_MAX_MEMORY_MIB"},
		{Env: map[string]string{"PREVIEW_MAX_STORAGE_GIB": "-1"}, Want: "PREVIEW_MAX_STORAGE_GIB"},
	})
}

func TestMain(m *testing.M) { configtest.RunMain(m, main) }
