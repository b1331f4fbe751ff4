package activities

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// A running machine counts as unused when its pool holds it idle (from the
// later of its wake and its release) or nothing owns it past the grace
// period; busy, sleeping, young and leased machines do not count.
func TestAwakeUnused(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	machine := func(id string, phase dedalus.MachinePhase, ranFor, age time.Duration) dedalus.MachineListItem {
		m := dedalus.MachineListItem{CreatedAt: now.Add(-age)}
		m.MachineID, m.Status.Phase, m.Status.LastTransitionAt = id, phase, now.Add(-ranFor)
		return m
	}
	o := &ownership{machines: map[string]bool{}, idle: map[string]idleMachine{}}
	o.noteIdle("linux", runnerapi.Inventory{Machines: []runnerapi.PoolMachine{
		{MachineID: "released", State: runnerapi.MachineIdle, Since: now.Add(-90 * time.Minute)},
		{MachineID: "prewarmed", State: runnerapi.MachineIdle, Since: now.Add(-5 * time.Hour)},
		{MachineID: "asleep", State: runnerapi.MachineIdle, Since: now.Add(-5 * time.Hour)},
		{MachineID: "busy", State: runnerapi.MachineBusy, Since: now.Add(-5 * time.Hour)},
		{MachineID: "persistent", State: runnerapi.MachineIdle, RunningJob: 9, Since: now.Add(-5 * time.Hour)},
		{MachineID: "reserved", State: runnerapi.MachineIdle, Reserved: true, Since: now.Add(-5 * time.Hour)},
	}})
	for _, id := range []string{"released", "prewarmed", "asleep", "busy", "persistent", "reserved", "preview"} {
		o.machines[id] = true
	}
	a := newAwakeUnused(now, 30*time.Minute, []string{"linux", "gpu"})
	for _, m := range []dedalus.MachineListItem{
		machine("released", dedalus.PhaseRunning, 3*time.Hour, 6*time.Hour), // ran a 3 h job, idle for 90 min
		machine("prewarmed", dedalus.PhaseRunning, 20*time.Minute, 6*time.Hour),
		machine("asleep", dedalus.PhaseSleeping, 4*time.Hour, 6*time.Hour),
		machine("busy", dedalus.PhaseRunning, 4*time.Hour, 6*time.Hour),
		machine("persistent", dedalus.PhaseRunning, 4*time.Hour, 6*time.Hour),
		machine("reserved", dedalus.PhaseRunning, 4*time.Hour, 6*time.Hour),
		machine("preview", dedalus.PhaseRunning, 4*time.Hour, 6*time.Hour),
		machine("orphan", dedalus.PhaseRunning, 2*time.Hour, 2*time.Hour),
		machine("young", dedalus.PhaseRunning, 10*time.Minute, 10*time.Minute),
	} {
		a.observe(m, o)
	}
	assert.Equal(t, map[string]time.Duration{
		"pool:linux": 90 * time.Minute, "pool:gpu": 0, "unowned": 2 * time.Hour,
	}, a.longest)
}
