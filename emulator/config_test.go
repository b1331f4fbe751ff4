package emulator

import (
	"flag"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestControlEndpoints(t *testing.T) {
	t.Parallel()
	e := start(t)
	r, err := e.raw("PUT", "/_local/faults", `{"routes":{"getMachine":{"error_503":0.25,"latency_ms":5},"*":{"reset":0.01}},"wake_delay":"50ms","boot_delay":30}`, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var f Faults
	r.json(t, &f)
	assert.Equal(t, FaultRule{Error503: 0.25, LatencyMS: 5}, f.Routes["getMachine"])
	assert.Equal(t, Duration(50*time.Millisecond), *f.WakeDelay)
	assert.Equal(t, Duration(30*time.Millisecond), *f.BootDelay)
	assert.Equal(t, Duration(10*time.Millisecond), *f.SleepDelay)

	r, err = e.raw("GET", "/_local/faults", nil, nil)
	require.NoError(t, err)
	assert.JSONEq(t, `{"routes":{"getMachine":{"error_503":0.25,"latency_ms":5},"*":{"reset":0.01}},"boot_delay":"30ms","wake_delay":"50ms","sleep_delay":"10ms"}`, string(r.body))

	r, err = e.raw("PUT", "/_local/faults", `{"routes":{"makeCoffee":{"error_503":1}}}`, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, r.status)
	r, err = e.raw("PUT", "/_local/faults", `{"routes":{"*":{"error_503":2}}}`, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, r.status)

	e.create(nil)
	r, err = e.raw("POST", "/_local/stats/reset", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	st := e.stats()
	assert.Equal(t, int64(0), st.Creates)
	assert.Equal(t, 1, st.LiveMachines)
	assert.Equal(t, 1, st.MachinesTotal)
}

func TestConfig(t *testing.T) {
	_, err := New(Config{Addr: "0.0.0.0:8788", Logger: quiet})
	require.ErrorContains(t, err, "non-loopback")
	_, err = New(Config{Addr: "192.168.1.1:8788", Logger: quiet})
	require.Error(t, err)

	t.Setenv("DEDALUS_EMULATOR_BOOT_DELAY", "0s")
	t.Setenv("DEDALUS_EMULATOR_API_KEY", "k")
	t.Setenv("DEDALUS_EMULATOR_FAULTS", `{"routes":{"wakeMachine":{"error_429":0.5,"retry_after_ms":7}}}`)
	cfg, err := LoadConfig()
	require.NoError(t, err)
	assert.Equal(t, "k", cfg.APIKey)
	assert.Equal(t, DefaultAddr, cfg.Addr)
	assert.Equal(t, 300*time.Millisecond, cfg.WakeDelay)
	assert.Equal(t, int64(DefaultOutputCap), cfg.OutputCap)
	assert.Equal(t, FaultRule{Error429: 0.5, RetryAfterMS: 7}, cfg.Faults.Routes["wakeMachine"])
	assert.Equal(t, time.Duration(0), cfg.withDefaults().BootDelay, "an explicit 0 means no delay")

	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.BindFlags(fs)
	require.NoError(t, fs.Parse([]string{"--addr", "127.0.0.1:0", "--wake-delay", "0", "--output-cap", "10", "--faults", `{"routes":{"*":{"reset":0.5}}}`}))
	assert.Equal(t, "127.0.0.1:0", cfg.Addr)
	assert.Equal(t, time.Duration(0), cfg.withDefaults().WakeDelay)
	assert.Equal(t, int64(10), cfg.OutputCap)
	assert.Equal(t, 0.5, cfg.Faults.Routes["*"].Reset)
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		names = append(names, f.Name)
		assert.Contains(t, f.Usage, "env DEDALUS_EMULATOR_")
	})
	sort.Strings(names)
	assert.Equal(t, []string{"addr", "api-key", "boot-delay", "data-dir", "default-autosleep", "faults", "idempotency-ttl",
		"org-id", "output-cap", "seed", "sleep-delay", "tombstone-ttl", "wake-delay"}, names)
}
