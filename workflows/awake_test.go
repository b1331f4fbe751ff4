package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
)

// A wake's result is two observations: what the machine was, then what it is.
func TestObserveRefFoldsBeforeThenAfter(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	var m AwakeMeter
	m.Observe(dedalus.PhaseRunning, t0)
	closed := observeRef(&m, activities.MachineRef{
		WasPhase: dedalus.PhaseSleeping, WasTransitionAt: t0.Add(5 * time.Minute),
		Phase: dedalus.PhaseRunning, TransitionAt: t0.Add(time.Hour),
	}, t0.Add(time.Hour+time.Second))
	assert.Equal(t, 5*time.Minute, closed)
	assert.Equal(t, t0.Add(time.Hour), m.Since)

	// An older worker's answer has no times: the workflow's clock stands in.
	var old AwakeMeter
	observeRef(&old, activities.MachineRef{Phase: dedalus.PhaseRunning}, t0)
	assert.Equal(t, t0, old.Since)
	assert.Equal(t, time.Minute, observeRef(&old, activities.MachineRef{Phase: dedalus.PhaseDestroyed}, t0.Add(time.Minute)))
}

// The counter follows the closed total in whole seconds; the fraction waits.
func TestCountAwakeCarriesFractions(t *testing.T) {
	var got []int64
	c := counterFunc(func(n int64) { got = append(got, n) })
	var counted int64
	countAwake(c, 700*time.Millisecond, &counted)
	countAwake(c, 1400*time.Millisecond, &counted)
	countAwake(c, 1900*time.Millisecond, &counted)
	countAwake(c, 3*time.Second+100*time.Millisecond, &counted)
	assert.Equal(t, []int64{1, 2}, got)
	assert.Equal(t, int64(3), counted)
}
