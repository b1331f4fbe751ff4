package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Delivery outcomes (drydock_webhook_deliveries_total{outcome}).
const (
	OutcomeAccepted = "accepted" // Temporal took it: a workflow was started or signalled
	OutcomeIgnored  = "ignored"  // authentic, answered 2xx, nothing to do (policy, duplicate, no pool...)
	OutcomeRejected = "rejected" // answered 4xx: unauthenticated, malformed, too large...
	OutcomeFailed   = "failed"   // answered 5xx: Temporal unreachable; GitHub can redeliver
)

// Webhook is the webhook server's metrics.
type Webhook struct {
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	reading    *prometheus.GaugeVec
}

// NewWebhook registers the webhook server's metrics.
func NewWebhook(r *Registry) *Webhook {
	reg := r.Registerer()
	return &Webhook{
		deliveries: counterVec(reg, "webhook_deliveries_total",
			"GitHub webhook deliveries by event, action, outcome (accepted, ignored, rejected, failed) and reason code.",
			"event", "action", "outcome", "reason"),
		duration: histogramVec(reg, "webhook_delivery_duration_seconds",
			"Time to answer a webhook delivery (authentication, parsing, the Temporal call), by event and outcome.",
			fastBuckets, "event", "outcome"),
		reading: gaugeVec(reg, "webhook_bodies_reading",
			"Delivery bodies being read now, before authentication (at most WEBHOOK_MAX_CONCURRENT_BODIES)."),
	}
}

// BodiesReading sets how many delivery bodies are being read.
func (m *Webhook) BodiesReading(n int) {
	if m == nil {
		return
	}
	m.reading.WithLabelValues().Set(float64(n))
}

// Delivery counts one answered delivery.
func (m *Webhook) Delivery(event, action, outcome, reason string, took time.Duration) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(event, action, outcome, reason).Inc()
	m.duration.WithLabelValues(event, outcome).Observe(took.Seconds())
}

// Router request paths (drydock_router_requests_total{path}).
const (
	PathWarm  = "warm"  // proxied without asking Temporal
	PathCold  = "cold"  // waited for a wake (its own or a coalesced one)
	PathError = "error" // answered by the router: wake failed or timed out, preview gone, upstream failed
	// PathRefused: answered 429 by the router's limits before anything was
	// sent to Temporal (drydock_router_refused_total says which limit).
	PathRefused = "refused"
	// PathLogin: a non-public preview's request answered by the login
	// (a redirect to sign in, 401, 403, the session exchange); nothing was
	// woken or touched.
	PathLogin = "login"
)

// Reasons of drydock_router_refused_total.
const (
	RefusedClientRate = "client_rate" // the client's cold-request budget (ROUTER_COLD_RATE, ROUTER_COLD_BURST) is spent
	RefusedWakeCap    = "wake_cap"    // ROUTER_MAX_CONCURRENT_WAKES wakes are already in flight
)

// Router is the preview router's metrics.
type Router struct {
	requests *prometheus.CounterVec
	added    *prometheus.HistogramVec
	wakes    *prometheus.CounterVec
	wakeDur  *prometheus.HistogramVec
	refused  *prometheus.CounterVec
}

// NewRouter registers the preview router's metrics.
func NewRouter(r *Registry) *Router {
	reg := r.Registerer()
	return &Router{
		requests: counterVec(reg, "router_requests_total",
			"Preview requests by path: warm (proxied at once), cold (waited for a wake), error (answered by the router), refused (a limit), login (answered by the login: sign in, 401, 403).", "path"),
		added: histogramVec(reg, "router_added_latency_seconds",
			"Latency the router adds before a request reaches its preview: lookup and proxying when warm, the wake wait when cold.",
			addedBuckets, "path"),
		wakes: counterVec(reg, "router_wakes_total",
			"Wake requests the router sent to Temporal (one per preview at a time, however many requests wait), by result.", "result"),
		wakeDur: histogramVec(reg, "router_wake_duration_seconds",
			"Time from the router's wake request to the preview being awake, by result.", wakeBuckets, "result"),
		refused: counterVec(reg, "router_refused_total",
			"Requests for sleeping or unknown previews the router answered 429 without asking Temporal, by reason: client_rate (the client's cold-request budget), wake_cap (too many wakes in flight).", "reason"),
	}
}

// Refused counts one request answered 429 by a limit (RefusedClientRate,
// RefusedWakeCap); count it with Request(PathRefused) as well.
func (m *Router) Refused(reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(reason).Inc()
}

// Request counts one preview request; sent is false when it never reached
// the preview (then added is not observed).
func (m *Router) Request(path string, added time.Duration, sent bool) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(path).Inc()
	if sent {
		m.added.WithLabelValues(path).Observe(added.Seconds())
	}
}

// Wake records one wake request to Temporal: result is "ok", "unknown",
// "gone" or "error".
func (m *Router) Wake(result string, took time.Duration) {
	if m == nil {
		return
	}
	m.wakes.WithLabelValues(result).Inc()
	m.wakeDur.WithLabelValues(result).Observe(took.Seconds())
}

// Machines is the worker's machine-lifecycle metrics.
type Machines struct {
	wake *prometheus.HistogramVec
}

// NewMachines registers the worker's machine metrics.
func NewMachines(r *Registry) *Machines {
	return &Machines{
		wake: histogramVec(r.Registerer(), "machine_wake_seconds",
			"Machine wake latency, from the wake request to the machine running (machines found running are not counted), by workflow type.",
			wakeBuckets, "workflow_type"),
	}
}

// Woke records one wake of a sleeping machine.
func (m *Machines) Woke(workflowType string, took time.Duration) {
	if m == nil {
		return
	}
	m.wake.WithLabelValues(workflowType).Observe(took.Seconds())
}

// Dedalus is the Dedalus API client's metrics.
type Dedalus struct {
	errors *prometheus.CounterVec
	quota  *prometheus.CounterVec
}

// NewDedalus registers the Dedalus client's metrics.
func NewDedalus(r *Registry) *Dedalus {
	reg := r.Registerer()
	return &Dedalus{
		errors: counterVec(reg, "dedalus_api_errors_total",
			"Failed Dedalus API attempts (retried or not) by operation (METHOD /v1/machines/{id}/...) and code (error_code, HTTP status, or transport).",
			"operation", "code"),
		quota: counterVec(reg, "dedalus_quota_errors_total",
			"Dedalus API attempts refused because the account is at a limit of its plan (machines, vCPU, memory, storage), whatever error code spells it, by operation.",
			"operation"),
	}
}

// Quota counts one attempt refused for quota; it fits
// dedalus.Options.OnQuotaExceeded.
func (m *Dedalus) Quota(operation string) {
	if m == nil {
		return
	}
	m.quota.WithLabelValues(operation).Inc()
}

// Error counts one failed attempt; it fits dedalus.Options.OnError.
func (m *Dedalus) Error(operation, code string) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues(operation, code).Inc()
}

// GitHub is the GitHub API clients' metrics.
type GitHub struct {
	remaining *prometheus.GaugeVec
	limit     *prometheus.GaugeVec
	requests  *prometheus.CounterVec
}

// NewGitHub registers the GitHub clients' metrics.
func NewGitHub(r *Registry) *GitHub {
	reg := r.Registerer()
	return &GitHub{
		remaining: gaugeVec(reg, "github_rate_limit_remaining",
			"GitHub API requests left in the current rate-limit window (X-RateLimit-Remaining), by credential (token, app, or installation ID) and resource.",
			"credential", "resource"),
		limit: gaugeVec(reg, "github_rate_limit_limit",
			"GitHub API rate limit of the window (X-RateLimit-Limit), by credential and resource.", "credential", "resource"),
		requests: counterVec(reg, "github_api_requests_total",
			"GitHub API responses by credential and HTTP status.", "credential", "status"),
	}
}

// Response records one GitHub API answer's rate-limit headers.
func (m *GitHub) Response(credential string, status int, resource string, limit, remaining int, haveLimit bool) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(credential, strconv.Itoa(status)).Inc()
	if !haveLimit {
		return
	}
	if resource == "" {
		resource = "core"
	}
	m.remaining.WithLabelValues(credential, resource).Set(float64(remaining))
	m.limit.WithLabelValues(credential, resource).Set(float64(limit))
}
