package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/config"
)

// Every variable the binary reads is documented in docs/configuration.md.
func TestConfigDocumented(t *testing.T) {
	missing, err := config.MissingFromDocs(&emulator.Config{})
	require.NoError(t, err)
	assert.Empty(t, missing, "document these in "+config.ConfigurationDoc)
}

func TestHelpListsEveryFlagWithEnvAndDefault(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	for _, f := range []string{"addr", "api-key", "org-id", "data-dir", "boot-delay", "wake-delay", "sleep-delay",
		"default-autosleep", "output-cap", "faults", "seed", "tombstone-ttl", "idempotency-ttl", "log-level"} {
		env := "DEDALUS_EMULATOR_" + strings.ToUpper(strings.ReplaceAll(f, "-", "_"))
		assert.Regexp(t, regexp.MustCompile(`--`+f+`\n\s+.*\[env `+env+`, default [^\]]+\]`), out.String())
	}
	assert.Contains(t, out.String(), "default 127.0.0.1:8788")
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFlagsOverrideEnvAndServe(t *testing.T) {
	t.Setenv("DEDALUS_EMULATOR_ADDR", "127.0.0.1:1") // overridden by the flag
	t.Setenv("DEDALUS_EMULATOR_API_KEY", "env-key")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--boot-delay", "0", "--log-level", "debug"}, &stdout, &stderr)
	}()
	var url string
	re := regexp.MustCompile(`DEDALUS_BASE_URL=(\S+)`)
	require.Eventually(t, func() bool {
		m := re.FindStringSubmatch(stdout.String())
		if m == nil {
			return false
		}
		url = m[1]
		return true
	}, 10*time.Second, 10*time.Millisecond)
	assert.Contains(t, stdout.String(), "DEDALUS_API_KEY=env-key")
	req, err := http.NewRequest("GET", url+"/v1/machines", nil)
	require.NoError(t, err)
	req.Header.Set("x-api-key", "env-key")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	assert.NotContains(t, stderr.String(), "env-key", "the API key is never logged")
}

func TestRefusesNonLoopback(t *testing.T) {
	err := run(context.Background(), []string{"--addr", "0.0.0.0:8788"}, os.Stdout, os.Stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "non-loopback")
	assert.False(t, errors.Is(err, flag.ErrHelp))
}
