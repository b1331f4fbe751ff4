package dedalus

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
)

// APIError is an error answer from the Dedalus API. Both error body shapes of
// the spec decode into it: the JSON envelope ({error_code, message, retryable,
// retry_after_ms, details}) used on 401/403/409/429/503, and RFC 9457
// application/problem+json used otherwise (then Problem is set and Code is empty).
type APIError struct {
	StatusCode int
	Code       string // error_code, e.g. REVISION_MISMATCH; empty for problem+json bodies
	Message    string
	// Retryable is the server's word on whether the same request may succeed later.
	Retryable bool
	// RetryAfter is the server's requested delay before a retry (retry_after_ms), 0 if none.
	RetryAfter time.Duration
	Details    map[string]string
	Problem    *Problem
	// Operation names the call and its object, e.g. "wake machine dm-123".
	Operation string
}

func (e *APIError) Error() string {
	var b strings.Builder
	if e.Operation != "" {
		b.WriteString(e.Operation)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "dedalus: %d", e.StatusCode)
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// AsAPIError returns the *APIError in err's chain, if any.
func AsAPIError(err error) (*APIError, bool) {
	var ae *APIError
	ok := errors.As(err, &ae)
	return ae, ok
}

// HasCode reports whether err is an APIError with the given error_code.
func HasCode(err error, code string) bool {
	ae, ok := AsAPIError(err)
	return ok && ae.Code == code
}

// IsNotFound reports whether err is a 404 from the API (the object does not exist).
func IsNotFound(err error) bool {
	ae, ok := AsAPIError(err)
	return ok && ae.StatusCode == http.StatusNotFound
}

// IsRetryable reports whether the server said the request may succeed if repeated.
// Transport errors are not APIErrors and are judged by the caller.
func IsRetryable(err error) bool {
	ae, ok := AsAPIError(err)
	return ok && ae.Retryable
}

// IsQuotaExceeded reports whether err is the API refusing a create because
// the account is at a limit of its plan (machines, vCPU, memory, storage),
// which only a deleted machine or a bigger plan lifts: repeating the call
// soon is pointless. The contract names no quota error code; the known
// spellings are recognised: an error_code naming a quota or an exceeded
// limit (QUOTA_EXCEEDED, MACHINE_LIMIT_EXCEEDED, ..., never the transient
// RATE_LIMITED), 402 Payment Required, and a problem+json whose type or
// title speaks of a quota.
func IsQuotaExceeded(err error) bool {
	ae, ok := AsAPIError(err)
	if !ok {
		return false
	}
	code := strings.ToUpper(ae.Code)
	switch {
	case code == "RATE_LIMITED":
		return false
	case strings.Contains(code, "QUOTA"), strings.HasSuffix(code, "LIMIT_EXCEEDED"), strings.HasSuffix(code, "LIMIT_REACHED"):
		return true
	case ae.StatusCode == http.StatusPaymentRequired:
		return true
	case ae.Problem != nil:
		return strings.Contains(strings.ToLower(ae.Problem.Type+" "+ae.Problem.Title), "quota")
	}
	return false
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// decodeError builds an APIError from a non-2xx answer. It never fails: an
// unreadable body still yields an error carrying the status.
func decodeError(op string, resp *http.Response, body []byte) *APIError {
	ae := &APIError{StatusCode: resp.StatusCode, Operation: op}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct == "application/problem+json" {
		ae.setProblem(body, false)
	} else if !ae.setErrorBody(body) {
		ae.setProblem(body, true)
	}
	if ae.Message == "" {
		ae.Message = http.StatusText(resp.StatusCode)
		if s := strings.TrimSpace(string(body)); s != "" && len(s) < 200 {
			ae.Message = s
		}
	}
	if ae.Code == "" {
		// Problem bodies carry no retryable flag: only overload answers are worth repeating.
		ae.Retryable = resp.StatusCode == http.StatusTooManyRequests ||
			resp.StatusCode == http.StatusServiceUnavailable ||
			resp.StatusCode == http.StatusBadGateway ||
			resp.StatusCode == http.StatusGatewayTimeout
	}
	if ae.RetryAfter == 0 {
		if ra := parseRetryAfterHeader(resp.Header.Get("Retry-After")); ra > 0 {
			ae.RetryAfter = ra
		}
	}
	return ae
}

// setErrorBody fills ae from an ErrorBody with an error code, and reports
// whether body was one.
func (ae *APIError) setErrorBody(body []byte) bool {
	var eb ErrorBody
	if json.Unmarshal(body, &eb) != nil || eb.ErrorCode == "" {
		return false
	}
	ae.Code = eb.ErrorCode
	ae.Message = eb.Message
	ae.Retryable = eb.Retryable
	ae.RetryAfter = time.Duration(eb.RetryAfterMS) * time.Millisecond
	ae.Details = eb.Details
	return true
}

// setProblem fills ae from a problem body (its detail, else its title, is
// the message); when needText, a problem with neither is not taken.
func (ae *APIError) setProblem(body []byte, needText bool) {
	var p Problem
	if json.Unmarshal(body, &p) != nil || (needText && p.Title == "" && p.Detail == "") {
		return
	}
	ae.Problem = &p
	ae.Message = p.Detail
	if ae.Message == "" {
		ae.Message = p.Title
	}
}

func parseRetryAfterHeader(v string) time.Duration {
	if v == "" {
		return 0
	}
	var secs int
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
