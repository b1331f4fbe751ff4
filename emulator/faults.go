package emulator

import (
	"net/http"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

type rolled struct {
	reset, resetAfter bool
	err               *apiError
	latency           time.Duration
}

func (s *Server) roll(op string) rolled {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	rule, ok := s.faults[op]
	if !ok {
		rule, ok = s.faults["*"]
	}
	if !ok {
		return rolled{}
	}
	hit := func(p float64) bool { return p > 0 && s.rng.Float64() < p }
	var f rolled
	f.latency = time.Duration(rule.LatencyMS) * time.Millisecond
	switch {
	case hit(rule.Reset):
		f.reset = true
	case hit(rule.Error503):
		f.err = errBody(http.StatusServiceUnavailable, dedalus.CodeDependencyUnavailable, "runtime unavailable", true, 0, nil)
	case hit(rule.Error429):
		ra := rule.RetryAfterMS
		if ra == 0 {
			ra = DefaultRetryAfterMS
		}
		f.err = errBody(http.StatusTooManyRequests, dedalus.CodeRateLimited, "mutation rate limit exceeded", true, ra, nil)
	case hit(rule.ResetAfter):
		f.resetAfter = true
	}
	if f.reset || f.err != nil || f.resetAfter {
		s.faultsInjected.Add(1)
	}
	return f
}

func (s *Server) applyFaults(f Faults) {
	s.faultMu.Lock()
	s.faults = map[string]FaultRule{}
	for k, v := range f.Routes {
		s.faults[k] = v
	}
	s.faultMu.Unlock()
	s.mu.Lock()
	if f.BootDelay != nil {
		s.bootDelay = time.Duration(*f.BootDelay)
	}
	if f.WakeDelay != nil {
		s.wakeDelay = time.Duration(*f.WakeDelay)
	}
	if f.SleepDelay != nil {
		s.sleepDelay = time.Duration(*f.SleepDelay)
	}
	s.mu.Unlock()
}

// SetFaults replaces the fault-injection rules; nil delays keep their value.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.applyFaults(f)
	s.log.Info("faults updated", "routes", len(f.Routes))
	return nil
}

// Faults returns the current fault-injection configuration, delays included.
func (s *Server) Faults() Faults {
	var f Faults
	s.faultMu.Lock()
	f.Routes = make(map[string]FaultRule, len(s.faults))
	for k, v := range s.faults {
		f.Routes[k] = v
	}
	s.faultMu.Unlock()
	s.mu.Lock()
	f.BootDelay, f.WakeDelay, f.SleepDelay = D(s.bootDelay), D(s.wakeDelay), D(s.sleepDelay)
	s.mu.Unlock()
	return f
}
