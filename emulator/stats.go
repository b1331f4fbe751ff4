package emulator

import (
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

// counters are the resettable counters of Stats.
type counters struct {
	Creates           int64
	IdempotentReplays int64
	WakeRequests      int64
	Wakes             int64
	Sleeps            int64
	Autosleeps        int64
	Deletes           int64
	Executions        int64
}

// Stats is the emulator's accounting, served as JSON by GET /_local/stats.
type Stats struct {
	// Creates counts machines created (replays excluded).
	Creates int64 `json:"creates"`
	// IdempotentReplays counts requests answered from an idempotency record.
	IdempotentReplays int64 `json:"idempotent_replays"`
	// WakeRequests counts wake calls processed by the handler (replays and
	// rejected calls excluded), whatever the machine's phase.
	WakeRequests int64 `json:"wake_requests"`
	// Wakes counts completed sleeping -> running transitions, including wakes
	// triggered by executions.
	Wakes int64 `json:"wakes"`
	// Sleeps counts completed running -> sleeping transitions, autosleeps included.
	Sleeps int64 `json:"sleeps"`
	// Autosleeps counts the sleeps started by autosleep.
	Autosleeps int64 `json:"autosleeps"`
	// Deletes counts delete calls that started destroying a machine.
	Deletes int64 `json:"deletes"`
	// FaultsInjected counts API requests answered with an injected fault
	// (503, 429 or a connection reset, before or after processing).
	FaultsInjected int64 `json:"faults_injected"`
	// LiveMachines is the number of machines not destroyed (a gauge).
	LiveMachines int `json:"live_machines"`
	// MachinesTotal is the number of machines the emulator knows, destroyed
	// tombstones included (a gauge, not reset).
	MachinesTotal int `json:"machines_total"`
	// Executions counts executions created.
	Executions int64 `json:"executions"`
	// PreviewsLive is the number of open previews (a gauge).
	PreviewsLive int `json:"previews_live"`
	// AwakeSeconds is the sum of the machines' awake time (any phase but
	// sleeping, destroyed and failed) since creation or the last reset.
	AwakeSeconds float64 `json:"awake_seconds"`
	// AwakeVCPUSeconds is AwakeSeconds weighted by each machine's vcpu.
	AwakeVCPUSeconds float64 `json:"awake_vcpu_seconds"`
	// RunningSeconds is the part of AwakeSeconds the machines spent in
	// phase running; the rest is transitions (accepted, starting, stopping,
	// destroying: booting, waking, going to sleep, deleting), whose length
	// is the platform's (BootDelay, WakeDelay, SleepDelay here).
	RunningSeconds float64 `json:"running_seconds"`
	// RunningVCPUSeconds is RunningSeconds weighted by each machine's vcpu.
	RunningVCPUSeconds float64 `json:"running_vcpu_seconds"`
	// Machines has one entry per known machine, in creation order.
	Machines []MachineStats `json:"machines"`
}

// MachineStats is the accounting of one machine.
type MachineStats struct {
	MachineID      string               `json:"machine_id"`
	Phase          dedalus.MachinePhase `json:"phase"`
	VCPU           float64              `json:"vcpu"`
	AwakeSeconds   float64              `json:"awake_seconds"`
	RunningSeconds float64              `json:"running_seconds"`
}

// Stats returns the current accounting.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	c := s.counters
	st := Stats{
		Creates: c.Creates, IdempotentReplays: c.IdempotentReplays, WakeRequests: c.WakeRequests,
		Wakes: c.Wakes, Sleeps: c.Sleeps, Autosleeps: c.Autosleeps, Deletes: c.Deletes,
		Executions: c.Executions, MachinesTotal: len(s.order), Machines: make([]MachineStats, 0, len(s.order)),
		FaultsInjected: s.faultsInjected.Load(),
	}
	for _, m := range s.order {
		if m.phase != dedalus.PhaseDestroyed {
			st.LiveMachines++
		}
		for _, p := range m.previews.order {
			if !p.closed {
				st.PreviewsLive++
			}
		}
		awake := m.awakeAccum
		if !m.awakeSince.IsZero() {
			awake += now.Sub(m.awakeSince)
		}
		running := m.runAccum
		if !m.runSince.IsZero() {
			running += now.Sub(m.runSince)
		}
		sec, run := awake.Seconds(), running.Seconds()
		st.AwakeSeconds += sec
		st.AwakeVCPUSeconds += sec * m.vcpu
		st.RunningSeconds += run
		st.RunningVCPUSeconds += run * m.vcpu
		st.Machines = append(st.Machines, MachineStats{MachineID: m.id, Phase: m.phase, VCPU: m.vcpu,
			AwakeSeconds: sec, RunningSeconds: run})
	}
	return st
}

// ResetStats zeroes the counters and the awake time; machines are kept.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters = counters{}
	s.faultsInjected.Store(0)
	now := time.Now()
	for _, m := range s.order {
		m.awakeAccum, m.runAccum = 0, 0
		if !m.awakeSince.IsZero() {
			m.awakeSince = now
		}
		if !m.runSince.IsZero() {
			m.runSince = now
		}
	}
}
