package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

// watchStatus serves GET /v1/machines/{id}/status/stream: a server-sent
// event per revision of the machine (the current one first, or those after
// Last-Event-ID when the client resumes), until the machine has converged
// on its desired state, with a keepalive comment while nothing changes.
func (s *Server) watchStatus(w http.ResponseWriter, c *call) {
	id := c.param("machine_id")
	s.mu.Lock()
	m, aerr := s.lookup(id)
	s.mu.Unlock()
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	last, resumed := int64(-1), false
	if v := strings.TrimSpace(c.r.Header.Get(dedalus.HeaderLastEventID)); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			last, resumed = n, true
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	keep := time.NewTicker(s.keepalive)
	defer keep.Stop()
	for first := true; ; first = false {
		evs, converged, changed := s.statusEvents(m, last, first && !resumed)
		for _, ev := range evs {
			b, _ := json.Marshal(ev)
			if _, err := fmt.Fprintf(w, "id: %s\nevent: status\ndata: %s\n\n", ev.Status.Revision, b); err != nil {
				return
			}
			last, _ = strconv.ParseInt(ev.Status.Revision, 10, 64)
		}
		if len(evs) > 0 && rc.Flush() != nil {
			return
		}
		if converged || !s.awaitChange(w, rc, c, changed, keep.C) {
			return
		}
	}
}

// statusEvents are the snapshots of m to send next: the current one alone
// when current, else those past revision last. It also reports whether m
// has converged, and the channel its next change closes.
func (s *Server) statusEvents(m *machine, last int64, current bool) ([]dedalus.Machine, bool, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var evs []dedalus.Machine
	if current {
		evs = []dedalus.Machine{m.snapshot()}
	} else {
		for _, snap := range m.history {
			if rev, _ := strconv.ParseInt(snap.Status.Revision, 10, 64); rev > last {
				evs = append(evs, snap)
			}
		}
		if len(evs) == 0 && m.revision > last {
			evs = []dedalus.Machine{m.snapshot()}
		}
	}
	return evs, m.converged(), m.changed
}

// awaitChange waits for the machine to change, writing a keepalive comment
// on every tick. It is false when the stream should end: the client left,
// a write failed or the server is closing.
func (s *Server) awaitChange(w http.ResponseWriter, rc *http.ResponseController, c *call, changed chan struct{}, tick <-chan time.Time) bool {
	for {
		select {
		case <-changed:
			return true
		case <-tick:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return false
			}
			if err := rc.Flush(); err != nil {
				return false
			}
		case <-c.r.Context().Done():
			return false
		case <-s.done:
			return false
		}
	}
}
