// Package intake is Drydock's GitHub webhook endpoint: it authenticates
// deliveries (X-Hub-Signature-256), bounds and parses them, and routes the
// events Drydock acts on to Temporal. Everything else is acknowledged with a
// short reason so GitHub's delivery log stays readable.
package intake

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/drydock-dev/drydock/internal/metrics"
)

// Bounds on what an unauthenticated client can make the server hold: the
// signature covers the whole body, so a body is read before anything is known
// of its sender.
const (
	// MaxBody is GitHub's own cap on webhook payloads (25 MB): no
	// configuration may accept more.
	MaxBody = 25 << 20
	// DefaultMaxBody is the default body limit (1 MiB). Real pull_request and
	// workflow_job payloads are about 30 KB.
	DefaultMaxBody = 1 << 20
	// DefaultMaxConcurrentBodies is how many bodies are read at once by
	// default: at most 16 MiB of unauthenticated bodies in memory.
	DefaultMaxConcurrentBodies = 16
	// DefaultBodyWait is how long a delivery waits for a reading slot before
	// it is answered 503 with Retry-After. Real bodies are read in
	// milliseconds, so a slot frees quickly unless slow clients hold them all.
	DefaultBodyWait = time.Second
)

// Event is an authenticated, parsed delivery.
type Event struct {
	Name       string          // X-GitHub-Event, e.g. "pull_request"
	DeliveryID string          // X-GitHub-Delivery
	Action     string          // payload "action", if any
	Payload    json.RawMessage // the raw JSON body

	// What the Handler decoded of Payload for the event's router (nil when
	// another caller built the Event: the router decodes Payload), and the
	// error decoding it, which the router answers.
	parsed   parsed
	parseErr error
}

// decoded is ev's payload as the router's struct T: the Handler's
// decoding, or Payload decoded now for an Event built elsewhere.
func decoded[T any, PT interface {
	*T
	parsed
}](ev Event) (PT, error) {
	if ev.parseErr != nil {
		return nil, ev.parseErr
	}
	if p, ok := ev.parsed.(PT); ok {
		return p, nil
	}
	p := PT(new(T))
	if err := json.Unmarshal(ev.Payload, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Result is what a router made of an event: the HTTP status to answer with
// and a short reason (and workflow ID, when one was started or signalled).
type Result struct {
	Status     int
	Reason     string
	WorkflowID string
	// Accepted reports that Temporal took the event (a workflow was started
	// or signalled). Only accepted deliveries are remembered by Dedupe, so a
	// delivery that was skipped, refused or failed is judged afresh when
	// GitHub redelivers it.
	Accepted bool
	// Code is a short, stable reason code for metrics
	// (drydock_webhook_deliveries_total{reason}), e.g. "policy" or
	// "duplicate"; empty for accepted deliveries.
	Code string
}

// Router acts on authenticated events. Returning an error answers 503 so
// GitHub shows the delivery as failed and it can be redelivered.
type Router interface {
	Route(ctx context.Context, ev Event) (Result, error)
}

// HealthChecker reports whether the dependencies the handler needs answer.
type HealthChecker interface {
	Ready(ctx context.Context) error
}

// Handler serves POST /webhooks/github, GET /healthz and GET /readyz.
type Handler struct {
	secret   []byte
	allowed  *Allowlist
	router   Router
	health   HealthChecker
	log      *slog.Logger
	metrics  *metrics.Webhook
	maxBody  int64
	bodies   chan struct{} // one token per body being read
	bodyWait time.Duration
	reading  atomic.Int64
	peak     atomic.Int64
}

// Options configures a Handler.
type Options struct {
	// Secret is the webhook secret configured on GitHub. Empty is refused
	// unless Insecure is set (local development only: anyone can then post).
	Secret   string
	Insecure bool
	// Allowed is who may use Drydock (DRYDOCK_ALLOWED_OWNERS), checked for
	// every authenticated event before routing. Required: nil is refused,
	// AllowEveryone is the explicit "*".
	Allowed *Allowlist
	Router  Router
	Health  HealthChecker
	Logger  *slog.Logger
	// Metrics counts deliveries by event, action, outcome and reason (nil: none).
	Metrics *metrics.Webhook
	// MaxBody is the largest body read (0: DefaultMaxBody; at most MaxBody).
	// Larger deliveries are answered 413 without being read.
	MaxBody int64
	// MaxConcurrentBodies caps the bodies read at once, before
	// authentication (0: DefaultMaxConcurrentBodies). A delivery that finds
	// no free slot within BodyWait (0: DefaultBodyWait) is answered 503 with
	// Retry-After, unread.
	MaxConcurrentBodies int
	BodyWait            time.Duration
}

// New validates opts and returns a Handler.
func New(opts Options) (*Handler, error) {
	if opts.Secret == "" && !opts.Insecure {
		return nil, errors.New("GITHUB_WEBHOOK_SECRET is empty: set it to the secret configured on GitHub (or DRYDOCK_INSECURE_DEV=true for local development only)")
	}
	if opts.Allowed == nil {
		return nil, errNoAllowlist
	}
	if opts.MaxBody < 0 || opts.MaxBody > MaxBody {
		return nil, fmt.Errorf("WEBHOOK_MAX_BODY_BYTES=%d: want 1 to %d (GitHub's own cap)", opts.MaxBody, MaxBody)
	}
	if opts.MaxConcurrentBodies < 0 {
		return nil, fmt.Errorf("WEBHOOK_MAX_CONCURRENT_BODIES=%d: want a positive number", opts.MaxConcurrentBodies)
	}
	if opts.Router == nil {
		opts.Router = Acknowledge{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Handler{secret: []byte(opts.Secret), allowed: opts.Allowed, router: opts.Router, health: opts.Health, log: opts.Logger, metrics: opts.Metrics,
		maxBody: cmp.Or(opts.MaxBody, DefaultMaxBody), bodies: make(chan struct{}, cmp.Or(opts.MaxConcurrentBodies, DefaultMaxConcurrentBodies)),
		bodyWait: cmp.Or(opts.BodyWait, DefaultBodyWait)}
	h.metrics.BodiesReading(0)
	return h, nil
}

// BodiesReadPeak is the most delivery bodies the handler has read at once.
func (h *Handler) BodiesReadPeak() int { return int(h.peak.Load()) }

// acquireBody takes a reading slot, waiting at most bodyWait; false: none
// freed in time (or the client left).
func (h *Handler) acquireBody(ctx context.Context) (release func(), ok bool) {
	select {
	case h.bodies <- struct{}{}:
	default:
		t := time.NewTimer(h.bodyWait)
		defer t.Stop()
		select {
		case h.bodies <- struct{}{}:
		case <-t.C:
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
	n := h.reading.Add(1)
	for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
	}
	h.metrics.BodiesReading(int(n))
	return func() {
		h.metrics.BodiesReading(int(h.reading.Add(-1)))
		<-h.bodies
	}, true
}

// ServeHTTP routes the three endpoints.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/webhooks/github":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			h.answer(w, r, http.StatusMethodNotAllowed, "use POST", "")
			return
		}
		h.webhook(w, r)
	case "/healthz":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case "/readyz":
		h.ready(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	if h.health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := h.health.Ready(ctx); err != nil {
			// The public listener says no more than "unavailable"; the
			// reason (addresses, TLS errors) is for the admin listener's
			// /readyz and the log.
			h.log.Debug("not ready", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (h *Handler) webhook(w http.ResponseWriter, r *http.Request) {
	d := &answered{start: time.Now(), event: "unauthenticated"}
	defer h.count(d)
	body, ok := h.readDelivery(w, r, d)
	if !ok {
		return
	}
	event, ok := h.checkDelivery(w, r, d, body)
	if !ok {
		return
	}
	// One decoding per delivery, into the fields its router reads.
	parsed, parseErr := parsePayload(event, body)
	if parseErr != nil {
		// Not what its router can read: malformed JSON (or an action,
		// owner or installation of the wrong type) is answered here, any
		// other field by the router, as when it decoded the payload itself.
		var hp headPayload
		if err := json.Unmarshal(body, &hp); err != nil {
			d.reject("malformed_json")
			h.answer(w, r, http.StatusBadRequest, "malformed JSON: "+err.Error(), "")
			return
		}
		parsed = &hp
	}
	head := parsed.head()
	ev := Event{Name: event, DeliveryID: r.Header.Get("X-GitHub-Delivery"), Action: head.action, Payload: body, parsed: parsed, parseErr: parseErr}
	d.action = head.action
	// Who may use Drydock, once for every event, before any router sees it.
	// A ping of a hook that is not a repository's (no owner, no
	// installation) is let through: it changes nothing, and its pong tells
	// the operator the endpoint works.
	owner, installation := head.owner, head.installation
	if !h.allowed.Allows(owner, installation) && (event != "ping" || owner != "" || installation != 0) {
		d.outcome, d.reason = metrics.OutcomeIgnored, "owner_not_allowed"
		h.answer(w, r, http.StatusOK, notAllowed(owner, installation), "")
		return
	}
	res, err := h.router.Route(r.Context(), ev)
	if err != nil {
		d.outcome, d.reason = metrics.OutcomeFailed, "temporal_unavailable"
		h.log.Error("webhook routing failed", "delivery", ev.DeliveryID, "event", ev.Name, "action", ev.Action, "err", err)
		h.answer(w, r, http.StatusServiceUnavailable, "temporarily unable to process the delivery; redeliver it", "")
		return
	}
	d.result(res)
	h.answer(w, r, res.Status, res.Reason, res.WorkflowID)
}

// readDelivery reads the body of a delivery, within the size limit and the
// bound on bodies read at once; when it cannot, it answers the request and
// returns false.
func (h *Handler) readDelivery(w http.ResponseWriter, r *http.Request, d *answered) ([]byte, bool) {
	if r.ContentLength > h.maxBody {
		h.tooLarge(w, r, d)
		return nil, false
	}
	release, ok := h.acquireBody(r.Context())
	if !ok {
		d.reject("busy")
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "5")
		h.answer(w, r, http.StatusServiceUnavailable, "too many deliveries being read at once; retry shortly", "")
		return nil, false
	}
	body, err := readBody(w, r, h.maxBody)
	release()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.tooLarge(w, r, d)
			return nil, false
		}
		d.reject("unreadable_body")
		h.answer(w, r, http.StatusBadRequest, "could not read body", "")
		return nil, false
	}
	return body, true
}

// tooLarge answers a delivery whose body is over the size limit.
func (h *Handler) tooLarge(w http.ResponseWriter, r *http.Request, d *answered) {
	d.reject("too_large")
	w.Header().Set("Connection", "close") // the rest of the body is not read
	h.answer(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", h.maxBody), "")
}

// checkDelivery authenticates the delivery of body and checks its content
// type and event name, which it returns; when the delivery fails a check, it
// answers the request and returns false.
func (h *Handler) checkDelivery(w http.ResponseWriter, r *http.Request, d *answered, body []byte) (string, bool) {
	// Authenticate before looking at anything else in the request.
	if len(h.secret) > 0 {
		if reason := verifySignature(h.secret, r.Header, body); reason != "" {
			d.reject("bad_signature")
			h.answer(w, r, http.StatusUnauthorized, reason, "")
			return "", false
		}
	}
	// Authentic from here on: the event name is GitHub's, not anyone's
	// (without a secret, local development only, anyone's: not a label).
	if len(h.secret) > 0 {
		d.event = r.Header.Get("X-GitHub-Event")
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		d.reject("content_type")
		h.answer(w, r, http.StatusBadRequest, fmt.Sprintf("content type %q: set the webhook's content type to application/json", ct), "")
		return "", false
	}
	event := r.Header.Get("X-GitHub-Event")
	if event == "" {
		d.reject("missing_event")
		h.answer(w, r, http.StatusBadRequest, "missing X-GitHub-Event header", "")
		return "", false
	}
	return event, true
}

// readBody reads at most limit bytes of r's body, into a buffer sized from
// Content-Length when there is one (and it is within the limit).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= limit {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf.Bytes(), err
}

// notAllowed is the answer to an event from an owner or installation that
// is not on the allow-list.
func notAllowed(owner string, installation int64) string {
	switch {
	case owner != "" && installation != 0:
		return fmt.Sprintf("owner_not_allowed: repository owner %q (installation %d) is not allowed to use this Drydock (%s)", owner, installation, AllowedOwnersVar)
	case owner != "":
		return fmt.Sprintf("owner_not_allowed: repository owner %q is not allowed to use this Drydock (%s)", owner, AllowedOwnersVar)
	case installation != 0:
		return fmt.Sprintf("owner_not_allowed: installation %d is not allowed to use this Drydock (%s)", installation, AllowedOwnersVar)
	}
	return fmt.Sprintf("owner_not_allowed: event without a repository owner or installation: not allowed (%s)", AllowedOwnersVar)
}

// answered is what the metrics say of one delivery.
type answered struct {
	start                          time.Time
	event, action, outcome, reason string
}

func (d *answered) reject(reason string) { d.outcome, d.reason = metrics.OutcomeRejected, reason }

func (d *answered) result(res Result) {
	d.reason = res.Code
	switch {
	case res.Accepted:
		d.outcome = metrics.OutcomeAccepted
	case res.Status >= 500:
		d.outcome = metrics.OutcomeFailed
	case res.Status >= 400:
		d.outcome = metrics.OutcomeRejected
	default:
		d.outcome = metrics.OutcomeIgnored
	}
	if d.reason == "" && !res.Accepted {
		d.reason = "other"
	}
}

func (h *Handler) count(d *answered) {
	if d.outcome == "" {
		d.outcome, d.reason = metrics.OutcomeFailed, "other"
	}
	h.metrics.Delivery(d.event, d.action, d.outcome, d.reason, time.Since(d.start))
}

// verifySignature checks X-Hub-Signature-256 in constant time. It returns a
// reason when the delivery must be refused, "" when it is authentic.
func verifySignature(secret []byte, hdr http.Header, body []byte) string {
	sig := hdr.Get("X-Hub-Signature-256")
	if sig == "" {
		if hdr.Get("X-Hub-Signature") != "" {
			return "SHA-1 signatures are not accepted: X-Hub-Signature-256 is required"
		}
		return "missing X-Hub-Signature-256"
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if !ok {
		return "X-Hub-Signature-256 must start with sha256="
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return "X-Hub-Signature-256 is not hex"
	}
	if !hmac.Equal(got, Sign(secret, body)) {
		return "signature does not match"
	}
	return ""
}

// Sign computes the HMAC-SHA256 of body with secret (the raw bytes of X-Hub-Signature-256).
func Sign(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return m.Sum(nil)
}

// SignatureHeader renders the X-Hub-Signature-256 value for body.
func SignatureHeader(secret, body []byte) string {
	return "sha256=" + hex.EncodeToString(Sign(secret, body))
}

func (h *Handler) answer(w http.ResponseWriter, r *http.Request, status int, reason, workflowID string) {
	level := slog.LevelInfo
	if status >= 400 {
		level = slog.LevelWarn
	}
	h.log.Log(r.Context(), level, "webhook answered", "status", status, "reason", reason,
		"delivery", r.Header.Get("X-GitHub-Delivery"), "event", r.Header.Get("X-GitHub-Event"), "workflow_id", workflowID)
	body := map[string]string{"reason": reason}
	if workflowID != "" {
		body["workflow_id"] = workflowID
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Acknowledge answers ping and acknowledges every other event without acting.
// It is the default Router of a Handler and the fallback of a Mux.
type Acknowledge struct{}

// Route implements Router.
func (Acknowledge) Route(_ context.Context, ev Event) (Result, error) {
	if ev.Name == "ping" {
		return Result{Status: http.StatusOK, Reason: "pong", Code: "ping"}, nil
	}
	reason := fmt.Sprintf("event %q is not handled by Drydock", ev.Name)
	if ev.Action != "" {
		reason = fmt.Sprintf("event %q action %q is not handled by Drydock", ev.Name, ev.Action)
	}
	return Result{Status: http.StatusOK, Reason: reason, Code: "event_not_handled"}, nil
}
