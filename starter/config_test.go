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

func TestMain(m *testing.M) { configtest.RunMain(m, main) }
