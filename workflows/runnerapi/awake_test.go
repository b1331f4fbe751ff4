package runnerapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

var t0 = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestAwakeMeterCreateThenDelete(t *testing.T) {
	var m runnerapi.AwakeMeter
	assert.False(t, m.Awake())
	assert.Zero(t, m.SoFar(at(time.Hour)), "nothing seen: nothing awake")

	assert.Zero(t, m.Observe(dedalus.PhaseRunning, at(0)), "a create opens an interval")
	assert.True(t, m.Awake())
	assert.Equal(t, t0, m.Since)
	assert.Equal(t, 10*time.Minute, m.SoFar(at(10*time.Minute)), "the open interval counts up to now")
	assert.Zero(t, m.SoFar(at(-time.Minute)), "a clock behind the transition counts nothing")

	assert.Equal(t, 30*time.Minute, m.Observe(dedalus.PhaseDestroyed, at(30*time.Minute)), "a delete closes it")
	assert.False(t, m.Awake())
	assert.Equal(t, 30*time.Minute, m.Total)
	assert.Equal(t, 30*time.Minute, m.SoFar(at(5*time.Hour)), "nothing accrues once gone")
}

func TestAwakeMeterSleepAndWake(t *testing.T) {
	var m runnerapi.AwakeMeter
	m.Observe(dedalus.PhaseRunning, at(0))
	// A wake an hour later reads the machine first: autosleep put it to
	// sleep at 5m. The interval closes there, not at the wake.
	assert.Equal(t, 5*time.Minute, m.Observe(dedalus.PhaseSleeping, at(5*time.Minute)))
	assert.Zero(t, m.Observe(dedalus.PhaseRunning, at(time.Hour)))
	assert.Equal(t, 5*time.Minute, m.Total)
	assert.Equal(t, at(time.Hour), m.Since)
	assert.Equal(t, 7*time.Minute, m.SoFar(at(time.Hour+2*time.Minute)))

	// Sleeping seen while not awake changes nothing.
	m2 := runnerapi.AwakeMeter{}
	assert.Zero(t, m2.Observe(dedalus.PhaseSleeping, at(time.Minute)))
	assert.False(t, m2.Awake())
	assert.Zero(t, m2.Total)
}

func TestAwakeMeterTransitionalPhasesAreNotAwake(t *testing.T) {
	for _, phase := range []dedalus.MachinePhase{dedalus.PhaseStopping, dedalus.PhaseStarting, dedalus.PhaseDestroying, dedalus.PhaseFailed, dedalus.PhaseSleeping} {
		var m runnerapi.AwakeMeter
		m.Observe(dedalus.PhaseRunning, at(0))
		assert.Equal(t, time.Minute, m.Observe(phase, at(time.Minute)), phase)
		assert.False(t, m.Awake(), phase)
	}
}

// The same running interval seen again (a wake of a running machine, the
// job's and the pool's view of one wake) changes nothing.
func TestAwakeMeterRepeatedObservationIsIdempotent(t *testing.T) {
	var m runnerapi.AwakeMeter
	m.Observe(dedalus.PhaseRunning, at(0))
	for range 3 {
		assert.Zero(t, m.Observe(dedalus.PhaseRunning, at(0)))
	}
	m.Observe(dedalus.PhaseSleeping, at(time.Minute))
	assert.Zero(t, m.Observe(dedalus.PhaseSleeping, at(time.Minute)))
	assert.Equal(t, time.Minute, m.Total)
}

// Running seen with a newer transition than the open interval's start: it
// slept and woke unobserved, at an unknown time. The whole gap counts
// (never less than billed), and the interval goes on from the new start.
func TestAwakeMeterUnobservedSleepCountsTheGap(t *testing.T) {
	var m runnerapi.AwakeMeter
	m.Observe(dedalus.PhaseRunning, at(0))
	assert.Equal(t, 2*time.Hour, m.Observe(dedalus.PhaseRunning, at(2*time.Hour)))
	assert.Equal(t, 2*time.Hour, m.Total)
	assert.Equal(t, at(2*time.Hour), m.Since)
	assert.Equal(t, 3*time.Hour, m.SoFar(at(3*time.Hour)), "as if it never slept")
}

// Answers processed out of order (concurrent activities) are stale when
// older than the newest transition seen: they change nothing.
func TestAwakeMeterIgnoresStaleObservations(t *testing.T) {
	var m runnerapi.AwakeMeter
	m.Observe(dedalus.PhaseRunning, at(0))
	m.Observe(dedalus.PhaseDestroyed, at(time.Hour))
	assert.Zero(t, m.Observe(dedalus.PhaseRunning, at(30*time.Minute)), "a late wake answer does not reopen a deleted machine")
	assert.False(t, m.Awake())
	assert.Equal(t, time.Hour, m.SoFar(at(10*time.Hour)))

	// A wake's before-read older than the running interval already seen.
	var w runnerapi.AwakeMeter
	w.Observe(dedalus.PhaseRunning, at(time.Hour))
	assert.Zero(t, w.Observe(dedalus.PhaseSleeping, at(30*time.Minute)))
	assert.True(t, w.Awake())

	// No phase or no time: nothing to fold in.
	assert.Zero(t, w.Observe("", at(2*time.Hour)))
	assert.Zero(t, w.Observe(dedalus.PhaseSleeping, time.Time{}))
	assert.True(t, w.Awake())
}

// A preview's meter spans its machines: a failed deploy's machine is
// deleted, the next push creates another.
func TestAwakeMeterSpansMachines(t *testing.T) {
	var m runnerapi.AwakeMeter
	m.Observe(dedalus.PhaseRunning, at(0))
	m.Observe(dedalus.PhaseDestroyed, at(10*time.Minute))
	m.Observe(dedalus.PhaseRunning, at(time.Hour))
	m.Observe(dedalus.PhaseSleeping, at(time.Hour+15*time.Minute))
	assert.Equal(t, 25*time.Minute, m.Total)
}

// The meter is carried in workflow state: it survives a JSON round trip,
// and the zero meter encodes to nothing.
func TestAwakeMeterJSON(t *testing.T) {
	var m runnerapi.AwakeMeter
	m.Observe(dedalus.PhaseRunning, at(0))
	m.Observe(dedalus.PhaseSleeping, at(time.Minute))
	m.Observe(dedalus.PhaseRunning, at(time.Hour))
	b, err := json.Marshal(m)
	require.NoError(t, err)
	var back runnerapi.AwakeMeter
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, m.Total, back.Total)
	assert.True(t, m.Since.Equal(back.Since))
	assert.True(t, m.Last.Equal(back.Last))

	b, err = json.Marshal(struct {
		A runnerapi.AwakeMeter `json:",omitzero"`
	}{})
	require.NoError(t, err)
	assert.JSONEq(t, `{}`, string(b))
}
