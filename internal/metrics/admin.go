package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"
)

// Health is a binary's liveness and readiness. Liveness is the process
// answering; readiness is its check passing and the process not shutting
// down, so a load balancer stops sending work as soon as SIGTERM arrives.
type Health struct {
	check    func(context.Context) error
	stopping atomic.Bool
}

// NewHealth returns a Health whose readiness runs check (nil: always ready).
func NewHealth(check func(context.Context) error) *Health { return &Health{check: check} }

// Stopping marks the process as shutting down: /readyz answers 503 from now on.
func (h *Health) Stopping() { h.stopping.Store(true) }

// Ready is nil when the process should get work.
func (h *Health) Ready(ctx context.Context) error {
	if h.stopping.Load() {
		return errStopping
	}
	if h.check == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return h.check(ctx)
}

type stoppingError struct{}

func (stoppingError) Error() string { return "shutting down" }

var errStopping error = stoppingError{}

// Admin is the admin listener's handler: GET /metrics (Prometheus), /healthz
// (liveness: 200 while the process serves) and /readyz (200, or 503 with
// the reason).
func (r *Registry) Admin(h *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		if err := h.Ready(req.Context()); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
			return
		}
		writeStatus(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return mux
}

func writeStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
