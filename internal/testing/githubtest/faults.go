package githubtest

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Fault is an answer a route gives instead of its own (see FailNext).
type Fault struct {
	Status int
	Header http.Header
	Body   map[string]any // JSON; nil: none
}

// BadGateway is GitHub's 502 (a backend timed out).
func BadGateway() Fault {
	return Fault{Status: http.StatusBadGateway, Body: map[string]any{"message": "Server Error"}}
}

// SecondaryRateLimit is GitHub's secondary rate limit: 403 with Retry-After
// (whole seconds) and the documentation URL go-github recognises. The
// primary limit still has requests left.
func SecondaryRateLimit(retryAfter time.Duration) Fault {
	return Fault{
		Status: http.StatusForbidden,
		Header: http.Header{"Retry-After": {strconv.Itoa(int(retryAfter.Round(time.Second) / time.Second))}},
		Body: map[string]any{
			"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID DRYDOCK.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
		},
	}
}

// RateLimit is GitHub's primary rate limit: 403 with no requests remaining
// until reset.
func RateLimit(reset time.Time) Fault {
	return Fault{
		Status: http.StatusForbidden,
		Header: http.Header{
			"X-Ratelimit-Remaining": {"0"},
			"X-Ratelimit-Used":      {"5000"},
			"X-Ratelimit-Reset":     {strconv.FormatInt(reset.Unix(), 10)},
		},
		Body: map[string]any{
			"message":           "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID DRYDOCK.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit",
		},
	}
}

// Error is any status with GitHub's error body.
func Error(status int, message string) Fault {
	return Fault{Status: status, Body: map[string]any{"message": message, "documentation_url": docsURL, "status": strconv.Itoa(status)}}
}

// AnyRoute makes FailNext apply to whichever route is requested next.
const AnyRoute = "*"

// FailNext makes the next n requests to route (a Route constant, or
// AnyRoute) answer f instead, before authentication, and in the order the
// faults were queued.
func (s *Server) FailNext(route string, n int, f Fault) {
	if route != AnyRoute && !isRoute(route) {
		panic(fmt.Sprintf("githubtest: FailNext: no route %q", route))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[route] = append(s.faults[route], f)
	}
}

// FaultsPending is how many faults queued with FailNext for route (a Route
// constant or AnyRoute) have not been answered yet.
func (s *Server) FaultsPending(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.faults[route])
}

func (s *Server) takeFault(route string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range []string{route, AnyRoute} {
		if q := s.faults[k]; len(q) > 0 {
			s.faults[k] = q[1:]
			return q[0], true
		}
	}
	return Fault{}, false
}

func (f Fault) write(w http.ResponseWriter) {
	for k, vs := range f.Header {
		w.Header()[http.CanonicalHeaderKey(k)] = vs
	}
	if f.Body == nil {
		w.WriteHeader(f.Status)
		return
	}
	writeJSON(w, f.Status, f.Body)
}
