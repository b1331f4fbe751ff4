package main

import (
	"testing"

	"github.com/drydock-dev/drydock/internal/config/configtest"
)

// Every variable the binary reads is documented in docs/configuration.md, and --help
// lists each with its default.
func TestConfigDocumented(t *testing.T) { configtest.Documented(t, &Config{}) }

func TestMain(m *testing.M) { configtest.RunMain(m, main) }
