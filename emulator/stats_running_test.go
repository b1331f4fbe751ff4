package emulator

import (
	"net/http"
	"testing"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The accounting splits a machine's awake time into the time it ran and the
// platform's transitions (boot, wake, going to sleep): the cost benchmark
// tells Drydock's share of the awake time from the platform's with it.
func TestStatsRunningExcludesTransitions(t *testing.T) {
	t.Parallel()
	const boot, wake, sleep = 200 * time.Millisecond, 300 * time.Millisecond, 150 * time.Millisecond
	e := start(t, func(c *Config) { c.BootDelay, c.WakeDelay, c.SleepDelay = boot, wake, sleep })
	m := e.running(map[string]any{"vcpu": 2, "memory_mib": 512, "storage_gib": 1})
	st := e.stats()
	assert.GreaterOrEqual(t, st.AwakeSeconds-st.RunningSeconds, boot.Seconds(), "booting is awake but not running")

	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+m.MachineID+"/sleep", nil).status)
	e.waitPhase(m.MachineID, dedalus.PhaseSleeping)
	e.s.ResetStats()
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+m.MachineID+"/wake", nil).status)
	e.waitPhase(m.MachineID, dedalus.PhaseRunning)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+m.MachineID+"/sleep", nil).status)
	e.waitPhase(m.MachineID, dedalus.PhaseSleeping)

	st = e.stats()
	require.Len(t, st.Machines, 1)
	ms := st.Machines[0]
	transitions := ms.AwakeSeconds - ms.RunningSeconds
	assert.GreaterOrEqual(t, transitions, (wake + sleep).Seconds(), "waking and going to sleep are transitions")
	// The upper bounds are loose: on a loaded machine (the race detector,
	// other tests) the transitions' timers and the 100 ms fire late.
	assert.Less(t, transitions, (wake + sleep + 2*time.Second).Seconds())
	assert.GreaterOrEqual(t, ms.RunningSeconds, 0.1, "the time between wake and sleep is running")
	assert.Less(t, ms.RunningSeconds, 2.0)
	assert.InDelta(t, ms.RunningSeconds, st.RunningSeconds, 1e-9)
	assert.InDelta(t, 2*st.RunningSeconds, st.RunningVCPUSeconds, 1e-9)

	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, st.RunningSeconds, e.stats().RunningSeconds, "nothing accrues while asleep")
}
