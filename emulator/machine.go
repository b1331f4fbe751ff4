package emulator

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

const historyCap = 128

// machine is the emulator's state of one machine. Guarded by Server.mu.
type machine struct {
	id        string
	seq       int64
	vcpu      float64
	memoryMiB int64
	storGiB   int64
	autosleep time.Duration

	desired        dedalus.DesiredState
	phase          dedalus.MachinePhase
	reason         string
	revision       int64
	lastTransition time.Time
	lastProgress   time.Time
	createdAt      time.Time
	destroyedAt    time.Time

	dir, root, home string
	appPort         int

	op            int64 // lifecycle token: pending steps with another token are void
	wakeFromSleep bool  // the current starting phase restores a sleeping machine
	autoSleep     bool  // the current stopping phase was started by autosleep
	frozen        bool  // processes are SIGSTOPped

	history []dedalus.Machine // recent snapshots, ascending revision
	changed chan struct{}     // closed and replaced on every change

	lastActivity  time.Time
	activeProxies int
	runningExecs  int

	awakeAccum time.Duration
	awakeSince time.Time // zero while not awake
	// runAccum and runSince account the part of the awake time spent
	// running; the rest of it is the provider's transitions (booting,
	// waking, going to sleep, deleting).
	runAccum time.Duration
	runSince time.Time // zero while not running

	pgids map[int]bool // process groups of executions

	ownFS bool // the machine has its own /etc and /home (userns.go)
	// etcOverlay: its /etc is an overlay on the host's (else a copy).
	etcOverlay bool
	nsPid      int // its namespace holder, 0 before the first execution

	execs      children[*execution]
	strayPipes []*os.File // output pipes of deleted executions
	previews   children[*preview]
}

func awakePhase(p dedalus.MachinePhase) bool {
	switch p {
	case dedalus.PhaseSleeping, dedalus.PhaseDestroyed, dedalus.PhaseFailed:
		return false
	}
	return true
}

func (m *machine) snapshot() dedalus.Machine {
	return dedalus.Machine{
		MachineID:    m.id,
		VCPU:         m.vcpu,
		MemoryMiB:    m.memoryMiB,
		StorageGiB:   m.storGiB,
		DesiredState: m.desired,
		Status: dedalus.LifecycleStatus{
			Phase:            m.phase,
			Reason:           m.reason,
			Retryable:        false,
			Revision:         strconv.FormatInt(m.revision, 10),
			LastTransitionAt: m.lastTransition,
			LastProgressAt:   m.lastProgress,
		},
		AutosleepSeconds: int64((m.autosleep + time.Second - 1) / time.Second),
	}
}

func (m *machine) etag() string { return strconv.FormatInt(m.revision, 10) }

func (m *machine) converged() bool { return m.phase == m.desired.Phase() }

func (m *machine) pgidSet() map[int]bool {
	out := make(map[int]bool, len(m.pgids))
	for k := range m.pgids {
		out[k] = true
	}
	return out
}

// closePipes closes the output pipes of every execution (unblocking readers
// held open by leftover background processes).
func (m *machine) closePipes() {
	for _, e := range m.execs.order {
		e.closePipes()
	}
	for _, f := range m.strayPipes {
		_ = f.Close()
	}
}

// record bumps the revision, appends the snapshot to the history and wakes watchers.
func (s *Server) record(m *machine, now time.Time) {
	m.revision++
	m.lastProgress = now
	m.history = append(m.history, m.snapshot())
	if len(m.history) > historyCap {
		m.history = append([]dedalus.Machine(nil), m.history[len(m.history)-historyCap:]...)
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// transition moves m to phase. Call with s.mu held.
func (s *Server) transition(m *machine, phase dedalus.MachinePhase, reason string) {
	now := time.Now()
	was, is := awakePhase(m.phase), awakePhase(phase)
	if was && !is {
		m.awakeAccum += now.Sub(m.awakeSince)
		m.awakeSince = time.Time{}
	} else if !was && is {
		m.awakeSince = now
	}
	if m.phase == dedalus.PhaseRunning && phase != dedalus.PhaseRunning {
		m.runAccum += now.Sub(m.runSince)
		m.runSince = time.Time{}
	} else if m.phase != dedalus.PhaseRunning && phase == dedalus.PhaseRunning {
		m.runSince = now
	}
	old := m.phase
	m.phase, m.reason, m.lastTransition = phase, reason, now
	s.record(m, now)
	s.log.Info("machine transition", "machine_id", m.id, "from", old, "to", phase,
		"desired", m.desired, "revision", m.revision, "reason", reason)
}

// after runs fn under s.mu after d, unless m's lifecycle moved on (another
// operation started) or the server closed. Call with s.mu held.
func (s *Server) after(m *machine, d time.Duration, fn func()) {
	token := m.op
	s.goroutine(func() {
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.done:
				return
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || m.op != token {
			return
		}
		fn()
	})
}

func (s *Server) boot(m *machine) {
	half := s.bootDelay / 2
	s.after(m, half, func() {
		s.transition(m, dedalus.PhaseStarting, "booting")
		s.after(m, s.bootDelay-half, func() { s.becomeRunning(m, "machine running") })
	})
}

// becomeRunning completes a boot or wake. Call with s.mu held.
func (s *Server) becomeRunning(m *machine, reason string) {
	if m.frozen {
		thaw(m.id, m.pgids)
		m.frozen = false
	}
	s.transition(m, dedalus.PhaseRunning, reason)
	m.lastActivity = m.lastTransition
	m.markReady(m.lastTransition)
	if m.wakeFromSleep {
		s.counters.Wakes++
		m.wakeFromSleep = false
	}
	for _, e := range m.execs.order {
		if e.status == dedalus.ExecQueued || e.status == dedalus.ExecWakeInProgress {
			s.startExecution(m, e)
		}
	}
}

// beginSleep starts running -> stopping -> sleeping. Call with s.mu held.
func (s *Server) beginSleep(m *machine, auto bool) {
	m.op++
	m.desired = dedalus.DesiredSleeping
	m.autoSleep = auto
	reason := "sleep requested"
	if auto {
		reason = fmt.Sprintf("autosleep: idle for %s", m.autosleep)
	}
	s.transition(m, dedalus.PhaseStopping, reason)
	s.after(m, s.sleepDelay, func() {
		freeze(m.id, m.pgids)
		m.frozen = true
		reason := "snapshot saved"
		if m.autoSleep {
			reason = fmt.Sprintf("autosleep: snapshot saved after %s idle", m.autosleep)
		}
		s.transition(m, dedalus.PhaseSleeping, reason)
		s.counters.Sleeps++
		if m.autoSleep {
			s.counters.Autosleeps++
			m.autoSleep = false
		}
	})
}

// beginWake starts (sleeping|stopping) -> starting -> running. Call with s.mu held.
func (s *Server) beginWake(m *machine, reason string) {
	m.op++
	m.wakeFromSleep = m.phase == dedalus.PhaseSleeping
	m.autoSleep = false
	m.desired = dedalus.DesiredRunning
	s.transition(m, dedalus.PhaseStarting, reason)
	s.after(m, s.wakeDelay, func() { s.becomeRunning(m, "restored from snapshot") })
}

// beginDestroy starts -> destroying -> destroyed. Call with s.mu held.
func (s *Server) beginDestroy(m *machine) {
	m.op++
	m.desired = dedalus.DesiredDestroyed
	m.wakeFromSleep, m.autoSleep = false, false
	s.transition(m, dedalus.PhaseDestroying, "delete requested")
	s.counters.Deletes++
	for _, p := range m.previews.order {
		p.shut()
	}
	for _, e := range m.execs.order {
		switch {
		case e.status == dedalus.ExecRunning:
			e.destroyed = true
		case !e.status.Terminal():
			s.finishPending(m, e, dedalus.ExecCancelled, ExecErrMachineDestroyed, "machine was destroyed before the execution started")
		}
	}
	killOnce(m.id, m.pgids)
	m.frozen = false
	pg := m.pgidSet()
	delay := s.sleepDelay
	s.goroutine(func() {
		start := time.Now()
		if left := killVerify(m.id, pg, 10*time.Second); left > 0 {
			s.log.Warn("processes survived SIGKILL", "machine_id", m.id, "count", left)
		}
		s.mu.Lock()
		m.closePipes()
		s.releaseHolder(m)
		s.mu.Unlock()
		if err := os.RemoveAll(m.dir); err != nil {
			s.log.Warn("removing machine directory", "machine_id", m.id, "err", err)
		}
		if rest := delay - time.Since(start); rest > 0 {
			t := time.NewTimer(rest)
			select {
			case <-t.C:
			case <-s.done:
			}
			t.Stop()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.usedPorts, m.appPort)
		s.transition(m, dedalus.PhaseDestroyed, "machine destroyed")
		m.destroyedAt = time.Now()
	})
}

// autosleepTick sleeps idle running machines. Call with s.mu held.
func (s *Server) autosleepTick(now time.Time) {
	for _, m := range s.order {
		if m.phase != dedalus.PhaseRunning || m.desired != dedalus.DesiredRunning || m.autosleep <= 0 {
			continue
		}
		if m.runningExecs > 0 || m.activeProxies > 0 {
			continue
		}
		if now.Sub(m.lastActivity) >= m.autosleep {
			s.log.Info("autosleep", "machine_id", m.id, "idle", now.Sub(m.lastActivity).Round(time.Millisecond))
			s.beginSleep(m, true)
		}
	}
}
