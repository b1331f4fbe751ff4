package dedalus_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

// WakeAndWaitFrom sends its wake call without reading the machine again
// (every cold request of a sleeping preview waits for that call), and a
// stale read only costs the round trip it saved: the wake is conditional on
// its revision, and the conflict re-reads.
func TestWakeAndWaitFromSkipsTheRead(t *testing.T) {
	rec := &callRecorder{}
	e := newEnv(t, envOpts{tapped: rec.tap})
	ctx := ctxT(t)
	m := e.running(t, "from", small)
	callsBeforeWake := func(t *testing.T, wake func() (*dedalus.Machine, error)) []string {
		t.Helper()
		_, err := e.c.SleepAndWait(ctx, m.MachineID, "from-sleep-"+t.Name())
		require.NoError(t, err)
		return rec.beforeWake(t, wake)
	}
	t.Run("fresh", func(t *testing.T) {
		assert.Equal(t, []string{"GET /" + m.MachineID}, callsBeforeWake(t, func() (*dedalus.Machine, error) {
			read, err := e.c.GetMachine(ctx, m.MachineID) // asleep: the only read
			require.NoError(t, err)
			return e.c.WakeAndWaitFrom(ctx, read, "from-wake-1")
		}))
	})
	t.Run("WakeAndWait reads first", func(t *testing.T) {
		assert.Equal(t, []string{"GET /" + m.MachineID, "GET /" + m.MachineID}, callsBeforeWake(t, func() (*dedalus.Machine, error) {
			_, err := e.c.GetMachine(ctx, m.MachineID) // as the activity did before
			require.NoError(t, err)
			return e.c.WakeAndWait(ctx, m.MachineID, "from-wake-2")
		}))
	})
	t.Run("stale", func(t *testing.T) {
		_, err := e.c.SleepAndWait(ctx, m.MachineID, "from-sleep-stale")
		require.NoError(t, err)
		stale, err := e.c.GetMachine(ctx, m.MachineID) // asleep, at a revision about to pass
		require.NoError(t, err)
		_, err = e.c.WakeAndWait(ctx, m.MachineID, "from-wake-3")
		require.NoError(t, err)
		callsBeforeWake(t, func() (*dedalus.Machine, error) { return e.c.WakeAndWaitFrom(ctx, stale, "from-wake-4") })
	})
	t.Run("stale and meant to run", func(t *testing.T) {
		stale, err := e.c.GetMachine(ctx, m.MachineID) // running; put to sleep below
		require.NoError(t, err)
		require.Equal(t, dedalus.DesiredRunning, stale.DesiredState)
		assert.Equal(t, []string{"GET /" + m.MachineID}, callsBeforeWake(t, func() (*dedalus.Machine, error) { return e.c.WakeAndWaitFrom(ctx, stale, "from-wake-5") }))
	})
}

// callRecorder records the API calls ("METHOD /last-segment") a client
// makes, status streams left out.
type callRecorder struct {
	mu    sync.Mutex
	calls []string
}

// tap records the calls that go through next.
func (r *callRecorder) tap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if !strings.HasSuffix(req.URL.Path, "/status/stream") {
			r.mu.Lock()
			r.calls = append(r.calls, req.Method+" "+req.URL.Path[strings.LastIndexByte(req.URL.Path, '/'):])
			r.mu.Unlock()
		}
		return next.RoundTrip(req)
	})
}

// beforeWake runs wake, which must leave the machine running, and returns
// the calls it made before its wake call.
func (r *callRecorder) beforeWake(t *testing.T, wake func() (*dedalus.Machine, error)) []string {
	t.Helper()
	r.mu.Lock()
	r.calls = nil
	r.mu.Unlock()
	woke, err := wake()
	require.NoError(t, err)
	assert.Equal(t, dedalus.PhaseRunning, woke.Status.Phase)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range r.calls {
		if c == "POST /wake" {
			return r.calls[:i]
		}
	}
	t.Fatalf("no wake call in %v", r.calls)
	return nil
}
