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

// --help lists every variable with its default.
func TestHelpListsEveryVariable(t *testing.T) {
	missing, err := config.HelpMissing(&Config{})
	require.NoError(t, err)
	assert.Empty(t, missing)
}
