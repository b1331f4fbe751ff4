// Package dedalus is a Go client for the Dedalus Machines (DCS) API: machines
// that sleep when idle and wake with memory, disk and processes intact, the
// commands (executions) run on them, and the previews that expose their ports.
//
// It follows the published OpenAPI contract: Bearer auth, an optional org
// header, caller-supplied Idempotency-Key on every mutation (so callers can
// keep keys stable across crashes), If-Match revisions on lifecycle mutations,
// and typed errors for both error body shapes. Requests the server marks
// retryable (429, 503) and transport failures are retried a bounded number of
// times with jittered backoff that honours retry_after_ms, but only when a
// retry cannot repeat a side effect: reads, and mutations that carry an
// idempotency key. The package has no Temporal dependency.
package dedalus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultBaseURL is the public Dedalus Cloud Services server.
const DefaultBaseURL = "https://dcs.dedaluslabs.ai"

// Config is how binaries configure the client from the environment
// (DEDALUS_API_KEY, DEDALUS_ORG_ID, DEDALUS_BASE_URL when embedded under the
// DEDALUS prefix).
type Config struct {
	APIKey  string `envconfig:"API_KEY" desc:"Dedalus API key (sent as a Bearer token); never logged"`
	OrgID   string `envconfig:"ORG_ID" desc:"optional Dedalus organization ID (X-Dedalus-Org-Id)"`
	BaseURL string `envconfig:"BASE_URL" default:"https://dcs.dedaluslabs.ai" desc:"Dedalus API base URL"`
}

// Options configures a Client. Only APIKey is required.
type Options struct {
	BaseURL string // default DefaultBaseURL
	APIKey  string
	OrgID   string
	// HTTPClient sends the requests; default a client with sane transport timeouts.
	// Its Timeout must be zero if status streams are used: per-request deadlines
	// come from RequestTimeout and the caller's context instead.
	HTTPClient *http.Client
	// MaxAttempts bounds tries per call, including the first (default 4).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the jittered exponential backoff (default 100ms, 5s).
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter is the longest server-requested delay the client waits out
	// itself (default 10s); longer ones are returned to the caller as errors.
	MaxRetryAfter time.Duration
	// RequestTimeout bounds one attempt of a non-streaming call (default 30s).
	RequestTimeout time.Duration
	// PollInterval is the polling period of the wait helpers when the status
	// stream is unavailable (default 250ms).
	PollInterval time.Duration
	UserAgent    string
	// OnError, when set, is told about every failed attempt (retried or
	// not): the operation as "METHOD /v1/machines/{id}/..." and the error
	// code (the API's error_code, else the HTTP status, else "transport").
	// It never sees the API key or an object ID. Drydock counts these.
	OnError func(operation, code string)
	// OnQuotaExceeded, when set, is told about every failed attempt that
	// IsQuotaExceeded recognises, by the same operation template: the
	// quota refusals, whatever error code a deployment's API spells them
	// with, can then be counted (and alerted on) apart from the rest.
	OnQuotaExceeded func(operation string)
}

// Client talks to one Dedalus API endpoint. It is safe for concurrent use.
type Client struct {
	base *url.URL
	key  string
	org  string
	hc   *http.Client
	opt  Options
}

// New validates opts and returns a Client.
func New(opts Options) (*Client, error) {
	if opts.APIKey == "" {
		return nil, errors.New("dedalus: API key is required (DEDALUS_API_KEY)")
	}
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("dedalus: base URL %q must be an absolute http(s) URL (DEDALUS_BASE_URL)", opts.BaseURL)
	}
	opts.setDefaults()
	return &Client{base: u, key: opts.APIKey, org: opts.OrgID, hc: opts.HTTPClient, opt: opts}, nil
}

// setDefaults fills the options left zero (or negative) with the defaults.
func (opts *Options) setDefaults() {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: defaultTransport()}
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 4
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = 10 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "drydock-dedalus-go/1"
	}
}

// NewFromConfig builds a client from environment configuration.
func NewFromConfig(cfg Config) (*Client, error) {
	return New(cfg.Options())
}

// Options are the client options cfg describes, to which a caller can add
// its own (OnError).
func (cfg Config) Options() Options {
	return Options{BaseURL: cfg.BaseURL, APIKey: cfg.APIKey, OrgID: cfg.OrgID}
}

// BaseURL is the API endpoint the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.ResponseHeaderTimeout = 60 * time.Second
	return t
}

// Mutation carries the concurrency-control headers of a mutating call.
type Mutation struct {
	// IdempotencyKey is required. Derive it from something stable across
	// retries and crashes (e.g. workflow ID + activity ID), never from time.
	IdempotencyKey string
	// IfMatch is the machine revision the caller last saw. When empty, the
	// client reads the current revision first, so the header is always sent.
	IfMatch string
}

type call struct {
	op      string // "wake machine dm-1": names the call in errors
	method  string
	path    string
	query   url.Values
	body    any
	idemKey string
	ifMatch string
	// needsKey marks mutations the spec requires an Idempotency-Key for.
	needsKey bool
}

// retrySafe reports whether repeating the call cannot repeat a side effect.
func (r *call) retrySafe() bool {
	return r.method == http.MethodGet || r.idemKey != ""
}

func (c *Client) newRequest(ctx context.Context, r *call, body []byte) (*http.Request, error) {
	u := *c.base
	u.Path = c.base.Path + r.path
	if len(r.query) > 0 {
		u.RawQuery = r.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.op, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.opt.UserAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.org != "" {
		req.Header.Set(HeaderOrgID, c.org)
	}
	if r.idemKey != "" {
		req.Header.Set(HeaderIdempotencyKey, r.idemKey)
	}
	if r.ifMatch != "" {
		req.Header.Set(HeaderIfMatch, r.ifMatch)
	}
	return req, nil
}

// do sends the call, retrying when that is safe and the failure is transient,
// and decodes a 2xx body into out (if non-nil).
func (c *Client) do(ctx context.Context, r *call, out any) error {
	if r.needsKey && r.idemKey == "" {
		return fmt.Errorf("%s: an idempotency key is required for this mutation", r.op)
	}
	var body []byte
	if r.body != nil {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return fmt.Errorf("%s: encode request: %w", r.op, err)
		}
	}
	for attempt := 1; ; attempt++ {
		err := c.attempt(ctx, r, body, out)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil {
			c.reportError(r, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", r.op, ctx.Err())
		}
		delay, retry := c.shouldRetry(r, err, attempt)
		if !retry {
			return err
		}
		if serr := sleepCtx(ctx, delay); serr != nil {
			return fmt.Errorf("%s: %w (last error: %v)", r.op, serr, err)
		}
	}
}

// reportError tells OnError and OnQuotaExceeded about one failed attempt.
func (c *Client) reportError(r *call, err error) {
	op := r.method + " " + RouteTemplate(r.path)
	if c.opt.OnError != nil {
		c.opt.OnError(op, ErrorCode(err))
	}
	if c.opt.OnQuotaExceeded != nil && IsQuotaExceeded(err) {
		c.opt.OnQuotaExceeded(op)
	}
}

func (c *Client) attempt(ctx context.Context, r *call, body []byte, out any) error {
	actx, cancel := context.WithTimeout(ctx, c.opt.RequestTimeout)
	defer cancel()
	req, err := c.newRequest(actx, r, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return &transportError{op: r.op, err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return decodeError(r.op, resp, b)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		// The mutation happened but its answer was lost: a retry with the same
		// idempotency key replays it, so treat like a transport failure.
		return &transportError{op: r.op, err: fmt.Errorf("decode response: %w", err)}
	}
	return nil
}

// transportError is a failure below HTTP (connection refused/reset, timeout)
// or an unreadable answer.
type transportError struct {
	op  string
	err error
}

func (e *transportError) Error() string { return e.op + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// IsTransport reports whether err is a network-level failure (no HTTP answer was read).
func IsTransport(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

func (c *Client) shouldRetry(r *call, err error, attempt int) (time.Duration, bool) {
	if attempt >= c.opt.MaxAttempts || !r.retrySafe() {
		return 0, false
	}
	var te *transportError
	if errors.As(err, &te) {
		return c.backoff(attempt), true
	}
	ae, ok := AsAPIError(err)
	if !ok || !ae.Retryable {
		return 0, false
	}
	switch ae.Code {
	case CodeRevisionMismatch:
		// Sending the same stale revision again cannot succeed: the caller re-reads.
		return 0, false
	}
	if ae.RetryAfter > 0 {
		if ae.RetryAfter > c.opt.MaxRetryAfter {
			return 0, false
		}
		// Honour the server's delay, plus a little jitter so that callers
		// told the same delay do not all return at once.
		return ae.RetryAfter + rand.N(ae.RetryAfter/10+time.Millisecond), true
	}
	return c.backoff(attempt), true
}

// backoff is "full jitter" exponential backoff: uniform in [min, min*2^(n-1)], capped.
func (c *Client) backoff(attempt int) time.Duration {
	ceil := c.opt.MinBackoff << min(attempt-1, 20)
	if ceil > c.opt.MaxBackoff || ceil <= 0 {
		ceil = c.opt.MaxBackoff
	}
	return c.opt.MinBackoff/2 + rand.N(ceil-c.opt.MinBackoff/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func listQuery(o ListOptions) url.Values {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", fmt.Sprint(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	return q
}

func pathID(kind, id string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("dedalus: %s ID is empty", kind)
	}
	return url.PathEscape(id), nil
}

// RouteTemplate replaces the object IDs of an API path with {id}, e.g.
// /v1/machines/dm-1/executions/ex-2/output → /v1/machines/{id}/executions/{id}/output.
func RouteTemplate(path string) string {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i := range segs {
		switch {
		case i == 2 && segs[1] == "machines":
			segs[i] = "{id}"
		case i == 4 && slices.Contains([]string{"artifacts", "executions", "previews", "ssh", "terminals"}, segs[3]):
			segs[i] = "{id}"
		}
	}
	return "/" + strings.Join(segs, "/")
}

// ErrorCode is a short, bounded name for err: the API's error_code (e.g.
// REVISION_MISMATCH), else the HTTP status ("503"), else "transport" for a
// failure without an answer, else "other".
func ErrorCode(err error) string {
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Code != "":
		return ae.Code
	case errors.As(err, &ae):
		return strconv.Itoa(ae.StatusCode)
	case IsTransport(err):
		return "transport"
	}
	return "other"
}
