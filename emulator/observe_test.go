package emulator

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type observed struct {
	op, machineID string
	at            time.Time
}

func TestObserve(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls []observed
	e := start(t, func(c *Config) {
		c.Faults = Faults{Routes: map[string]FaultRule{"sleepMachine": {Error503: 1}}}
		c.Observe = func(op, machineID string, at time.Time) {
			mu.Lock()
			calls = append(calls, observed{op, machineID, at})
			mu.Unlock()
		}
	})
	seen := func() []observed {
		mu.Lock()
		defer mu.Unlock()
		return append([]observed(nil), calls...)
	}

	// Refused before authentication, and the control endpoints: not observed.
	r, err := e.raw("GET", "/v1/machines", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, r.status)
	_ = e.stats()
	assert.Empty(t, seen())

	m := e.create(nil)
	e.waitPhase(m.MachineID, "running")
	mu.Lock()
	calls = nil
	mu.Unlock()
	before := time.Now()
	r = e.do("POST", "/v1/machines/"+m.MachineID+"/wake", nil)
	after := time.Now()
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	got := seen()
	require.Len(t, got, 1)
	assert.Equal(t, "wakeMachine", got[0].op)
	assert.Equal(t, m.MachineID, got[0].machineID)
	assert.False(t, got[0].at.Before(before) || got[0].at.After(after), "arrival time %s not within the call", got[0].at)

	// A call answered by an injected fault reached the emulator all the same.
	r = e.do("POST", "/v1/machines/"+m.MachineID+"/sleep", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	got = seen()
	require.Len(t, got, 2)
	assert.Equal(t, observed{"sleepMachine", m.MachineID, got[1].at}, got[1])

	_ = e.do("GET", "/v1/machines", nil)
	got = seen()
	require.Len(t, got, 3)
	assert.Equal(t, "listMachines", got[2].op)
	assert.Empty(t, got[2].machineID)
}
