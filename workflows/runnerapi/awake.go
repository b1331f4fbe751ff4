package runnerapi

import (
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

// AwakeMeter accounts the time a machine (or, for a preview, the succession
// of machines it had) spent running, from the machine states Drydock
// observes. The Dedalus API has no usage endpoint, but every machine read
// and mutation answers with status.phase and status.last_transition_at, and
// Drydock itself wakes its machines and sees them asleep or gone: creates,
// wakes (which read the machine first, so they also tell when it fell
// asleep), sleeps and deletes.
//
// The rule: a running observation opens an interval at its transition time;
// any other phase closes the open interval at its transition time. Awake
// means running: the brief transitional phases (starting, stopping,
// destroying) count as not awake.
//
// Between two observations the meter assumes the machine stayed as last
// seen. When a running observation has a newer transition than the open
// interval's start, the machine slept and woke again unobserved (autosleep,
// then a wake through the Dedalus preview URL or an execution); when it fell
// asleep is unknown. The meter then counts the whole gap as awake: it errs
// towards more awake time, never less than was billed. The same holds for a
// non-running observation that closes an interval: its transition is the
// latest one, so the machine may have slept earlier. Drydock's own wakes
// read the machine first, which closes the interval at the real sleep
// transition in the usual case.
//
// Observations older than the newest one seen (Last) are stale, for
// instance results of concurrent activities processed out of order, and
// change nothing. The zero AwakeMeter has seen nothing.
//
// AwakeMeter is a plain value: no clock, no I/O. It is carried in workflow
// state across continue-as-new.
type AwakeMeter struct {
	// Total is the awake time of the closed intervals.
	Total time.Duration `json:",omitempty"`
	// Since starts the open interval; zero while the machine is not known to run.
	Since time.Time `json:",omitzero"`
	// Last is the newest transition observed.
	Last time.Time `json:",omitzero"`
}

// Observe folds in one observation: the machine is in phase since at (its
// status.last_transition_at). It returns the awake time the observation
// closed (0 if it closed nothing).
func (m *AwakeMeter) Observe(phase dedalus.MachinePhase, at time.Time) (closed time.Duration) {
	if phase == "" || at.IsZero() || at.Before(m.Last) {
		return 0
	}
	m.Last = at
	if phase == dedalus.PhaseRunning {
		if m.Since.IsZero() {
			m.Since = at
			return 0
		}
		if !at.After(m.Since) {
			return 0 // the same interval, seen again
		}
		// It slept and woke unobserved: the gap counts (see the type's doc).
		closed = at.Sub(m.Since)
		m.Total += closed
		m.Since = at
		return closed
	}
	if m.Since.IsZero() {
		return 0
	}
	closed = at.Sub(m.Since)
	m.Total += closed
	m.Since = time.Time{}
	return closed
}

// Awake reports whether the machine is counted as running now.
func (m AwakeMeter) Awake() bool { return !m.Since.IsZero() }

// SoFar is the awake time up to now: the closed intervals and the open one.
func (m AwakeMeter) SoFar(now time.Time) time.Duration {
	d := m.Total
	if !m.Since.IsZero() && now.After(m.Since) {
		d += now.Sub(m.Since)
	}
	return d
}
