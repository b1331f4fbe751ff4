package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/drydock-dev/drydock/internal/config/configtest"
)

// Every variable the binary reads is documented in docs/configuration.md, and --help
// lists each with its default.
func TestConfigDocumented(t *testing.T) { configtest.Documented(t, &Config{}) }

func TestMain(m *testing.M) { configtest.RunMain(m, main) }

// The startup table never claims a login the router does not have: a
// non-public local preview without ROUTER_GITHUB_CLIENT_ID is refused.
func TestVisibilityNoteTellsTheTruth(t *testing.T) {
	assert.Contains(t, visibilityNote("public", false), "no login")
	assert.Contains(t, visibilityNote("private", true), "asks for a GitHub login")
	off := visibilityNote("org", false)
	assert.Contains(t, off, "403")
	assert.Contains(t, off, "ROUTER_GITHUB_CLIENT_ID")
	assert.NotContains(t, off, "asks for a GitHub login")
}
