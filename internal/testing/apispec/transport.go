package apispec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi/datamodel/high/base"
)

// Violation kinds.
const (
	KindRequest  = "request"  // the request sent does not conform
	KindResponse = "response" // the response received does not conform
	KindEvent    = "event"    // a Server-Sent Event payload does not conform
)

// Violation is one non-conforming request, response or streamed event.
type Violation struct {
	Kind     string   // KindRequest, KindResponse or KindEvent
	Method   string   // request method
	Path     string   // request URL path (not the template)
	Status   int      // response status; 0 if the round trip failed before a response
	Messages []string // what is wrong, one entry per problem
}

func (v Violation) String() string {
	status := "-"
	if v.Status != 0 {
		status = fmt.Sprint(v.Status)
	}
	return fmt.Sprintf("%s %s %s [%s]: %s", v.Kind, v.Method, v.Path, status, strings.Join(v.Messages, "; "))
}

// Transport is an http.RoundTripper that validates every exchange with a path
// in the contract and records violations. It never turns a violation into an
// error: what the caller sends, receives and reads is unchanged (bodies are
// buffered and replayed, byte for byte, including a read error at the end).
// Requests to paths outside the contract (the emulator's control endpoints
// such as /_local/stats) are passed through untouched and only counted (see
// Ignored). The exception is a path under the contract's own top-level
// segments (every contract path starts with /v1/): a /v1/... path the contract
// does not have is recorded as a request violation, since no real service
// would answer it.
//
// A Transport is safe for concurrent use.
type Transport struct {
	spec *Spec
	next http.RoundTripper

	mu         sync.Mutex
	violations []Violation
	exchanges  int
	ignored    int
	events     int
}

var _ http.RoundTripper = (*Transport)(nil)

// Transport wraps next (http.DefaultTransport if nil).
func (s *Spec) Transport(next http.RoundTripper) *Transport {
	if next == nil {
		next = http.DefaultTransport
	}
	return &Transport{spec: s, next: next}
}

// Violations returns a copy of the violations recorded so far, in the order
// they were recorded.
func (t *Transport) Violations() []Violation {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Violation, len(t.violations))
	for i, v := range t.violations {
		v.Messages = append([]string(nil), v.Messages...)
		out[i] = v
	}
	return out
}

// Exchanges is the number of round trips to a path in the contract whose
// request was validated (and whose response was, if one arrived).
func (t *Transport) Exchanges() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.exchanges
}

// Ignored is the number of round trips to paths outside the contract, passed
// through without validation.
func (t *Transport) Ignored() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ignored
}

// Events is the number of Server-Sent Event payloads validated so far (as the
// callers read them).
func (t *Transport) Events() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.events
}

func (t *Transport) record(v Violation) {
	t.mu.Lock()
	t.violations = append(t.violations, v)
	t.mu.Unlock()
}

func (t *Transport) recordErr(kind string, req *http.Request, status int, err error) {
	if err == nil {
		return
	}
	var ve *ValidationError
	msgs := []string{err.Error()}
	if errors.As(err, &ve) {
		msgs = ve.Problems
	}
	t.record(Violation{Kind: kind, Method: req.Method, Path: req.URL.Path, Status: status, Messages: msgs})
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if pathItem, _ := t.spec.route(req); pathItem == nil {
		return t.roundTripUnrouted(req)
	}

	send, body := replayableRequest(req)
	reqErr := t.spec.validateRequest(req, body)

	resp, err := t.next.RoundTrip(send)
	t.countExchange()
	if err != nil || resp == nil {
		t.recordErr(KindRequest, req, 0, reqErr)
		return resp, err
	}
	if send != req && resp.Request == send {
		resp.Request = req
	}
	t.recordErr(KindRequest, req, resp.StatusCode, reqErr)

	respBody, ok := bufferResponseBody(req, resp)
	if !ok {
		// The caller will see the same error when reading; validating a
		// truncated body would only add noise.
		return resp, nil
	}
	t.recordErr(KindResponse, req, resp.StatusCode, t.spec.validateResponse(req, resp, respBody))
	t.validateEvents(req, resp)
	return resp, nil
}

// roundTripUnrouted sends a request for a path the contract does not
// have: outside the contract's namespace it only counts it as ignored;
// under it (/v1/...) the client (or a test) is calling an endpoint the
// service does not have, a violation.
func (t *Transport) roundTripUnrouted(req *http.Request) (*http.Response, error) {
	if !t.spec.ownsPath(req.URL.Path) {
		t.mu.Lock()
		t.ignored++
		t.mu.Unlock()
		return t.next.RoundTrip(req)
	}
	resp, err := t.next.RoundTrip(req)
	status := 0
	if err == nil && resp != nil {
		status = resp.StatusCode
	}
	t.countExchange()
	t.record(Violation{Kind: KindRequest, Method: req.Method, Path: req.URL.Path, Status: status,
		Messages: []string{"path is not in the contract"}})
	return resp, err
}

func (t *Transport) countExchange() {
	t.mu.Lock()
	t.exchanges++
	t.mu.Unlock()
}

// bufferResponseBody reads the response's body (unless skipBody) and
// puts back one that replays it, read error included; ok is false when
// reading failed.
func bufferResponseBody(req *http.Request, resp *http.Response) (body []byte, ok bool) {
	if skipBody(req, resp) || resp.Body == nil || resp.Body == http.NoBody {
		return nil, true
	}
	b, readErr := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = replayBody(b, readErr)
	return b, readErr == nil
}

// validateEvents wraps an event stream's body so that each event is
// validated as the caller reads it; only if the contract declares an event
// schema for this status: an undeclared event stream was reported with
// the response.
func (t *Transport) validateEvents(req *http.Request, resp *http.Response) {
	if !isEventStream(resp) || resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	mt := t.spec.responseMedia(req, resp, isEventStreamMediaType)
	if mt == nil {
		return
	}
	sch := mt.Schema.Schema()
	if sch == nil {
		return
	}
	name := "event schema"
	if ref := mt.Schema.GetReference(); ref != "" {
		name = ref[strings.LastIndex(ref, "/")+1:] // e.g. LifecycleResponse
	}
	resp.Body = &sseBody{rc: resp.Body, onData: t.eventValidator(req, resp.StatusCode, sch, name)}
}

func isEventStreamMediaType(mt string) bool { return strings.HasPrefix(mt, "text/event-stream") }

// eventValidator validates one SSE data payload (as read by the caller)
// against the schema the contract declares for the stream.
func (t *Transport) eventValidator(req *http.Request, status int, sch *base.Schema, name string) func(eventType, id string, data []byte) {
	method, path := req.Method, req.URL.Path
	return func(eventType, id string, data []byte) {
		err := t.spec.validateAgainst(sch, name, data)
		t.mu.Lock()
		t.events++
		t.mu.Unlock()
		if err == nil {
			return
		}
		prefix := fmt.Sprintf("event %q (id %q) is not a %s: ", eventType, id, name)
		var msgs []string
		var ve *ValidationError
		if errors.As(err, &ve) {
			for _, p := range ve.Problems {
				msgs = append(msgs, prefix+p)
			}
		} else {
			msgs = []string{prefix + err.Error()}
		}
		t.record(Violation{Kind: KindEvent, Method: method, Path: path, Status: status, Messages: msgs})
	}
}

// replayableRequest returns the request to send and a copy of its body for
// validation, without changing what is sent. If req can replay its body
// (GetBody), req itself is sent untouched; otherwise the body is read, closed,
// and a clone carrying the same bytes (and the same read error, if any) is
// sent.
func replayableRequest(req *http.Request) (*http.Request, []byte) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	if req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil && rc != nil {
			b, readErr := io.ReadAll(rc)
			_ = rc.Close()
			if readErr == nil {
				return req, b
			}
		}
	}
	b, readErr := io.ReadAll(req.Body)
	_ = req.Body.Close()
	send := req.Clone(req.Context())
	send.Body = replayBody(b, readErr)
	if readErr == nil {
		send.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	} else {
		send.GetBody = nil
	}
	return send, b
}

// replayBody yields b and then err (io.EOF if nil).
func replayBody(b []byte, err error) io.ReadCloser {
	if err == nil {
		return io.NopCloser(bytes.NewReader(b))
	}
	return io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err}))
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// sseBody passes reads through unchanged while parsing the stream as
// Server-Sent Events (WHATWG HTML, "event stream interpretation") and calling
// onData with each dispatched event's data. An incomplete event at the end of
// the stream is not dispatched, as the standard says.
type sseBody struct {
	rc     io.ReadCloser
	onData func(eventType, id string, data []byte)

	line      []byte
	afterCR   bool // the previous byte was a CR (a following LF belongs to it)
	data      []byte
	hasData   bool
	eventType string
	lastID    string
}

func (b *sseBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	for _, c := range p[:n] {
		b.feed(c)
	}
	return n, err
}

func (b *sseBody) Close() error { return b.rc.Close() }

func (b *sseBody) feed(c byte) {
	switch {
	case c == '\n' && b.afterCR:
		b.afterCR = false
	case c == '\n' || c == '\r':
		b.afterCR = c == '\r'
		b.processLine(b.line)
		b.line = b.line[:0]
	default:
		b.afterCR = false
		b.line = append(b.line, c)
	}
}

func (b *sseBody) processLine(line []byte) {
	if len(line) == 0 {
		b.dispatch()
		return
	}
	if line[0] == ':' {
		return // comment / keep-alive
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "data":
		b.data = append(b.data, value...)
		b.data = append(b.data, '\n')
		b.hasData = true
	case "event":
		b.eventType = string(value)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			b.lastID = string(value)
		}
	}
}

func (b *sseBody) dispatch() {
	defer func() {
		b.data = b.data[:0]
		b.hasData = false
		b.eventType = ""
	}()
	if !b.hasData {
		return
	}
	data := bytes.TrimSuffix(b.data, []byte("\n"))
	eventType := b.eventType
	if eventType == "" {
		eventType = "message"
	}
	b.onData(eventType, b.lastID, append([]byte(nil), data...))
}
