package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/config"
)

// Every variable the binary reads is documented in README.md.
func TestConfigDocumentedInReadme(t *testing.T) {
	missing, err := config.MissingFromReadme(&Config{})
	require.NoError(t, err)
	assert.Empty(t, missing, "document these in README.md")
}

func TestConfigDefaultsValidate(t *testing.T) {
	var cfg Config
	require.NoError(t, config.Load(&cfg))
	require.NoError(t, cfg.validate())

	bad := cfg
	bad.DefaultRepo = "not-a-repo"
	assert.ErrorContains(t, bad.validate(), "PREVIEW_DEFAULT_REPO")
	bad = cfg
	bad.Domain = "http://preview.localhost"
	assert.ErrorContains(t, bad.validate(), "PREVIEW_DOMAIN")
	bad = cfg
	bad.AwakeTTL = 0
	assert.ErrorContains(t, bad.validate(), "ROUTER_AWAKE_TTL")
}
