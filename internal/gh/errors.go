package gh

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v62/github"
)

// ErrInvalid marks a call Drydock refused to send because an argument is
// wrong (an empty owner, a short SHA, an unknown deployment state). Permanent.
var ErrInvalid = errors.New("invalid argument")

// ErrUnusable marks an answer Drydock cannot use: a directory where a file
// was expected, a file over the contents API's 1 MB limit. Permanent.
var ErrUnusable = errors.New("unusable answer")

// secondaryRateLimitWait is how long GitHub asks clients to wait after a
// secondary rate limit that names no time ("wait at least one minute").
const secondaryRateLimitWait = time.Minute

// Failure says what a failed GitHub call means for a retry.
type Failure struct {
	// Permanent: sending the same call again will not succeed (401, 403 other
	// than rate limits, 404, 422, other 4xx, ErrInvalid, ErrUnusable).
	Permanent bool
	// RateLimited: a primary or secondary rate limit (403 or 429).
	RateLimited bool
	// RetryAfter is how long GitHub asked to wait; 0 = the caller's backoff.
	RetryAfter time.Duration
	// StatusCode is GitHub's HTTP status; 0 when no answer arrived.
	StatusCode int
}

// Classify explains err, as returned by this package or go-github. Errors
// without an answer from GitHub (transport failures, timeouts) are
// transient. A nil error is the zero Failure.
func Classify(err error) Failure {
	if err == nil {
		return Failure{}
	}
	if errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnusable) || errors.Is(err, ErrNoInstallation) || errors.Is(err, github.ErrPathForbidden) {
		return Failure{Permanent: true}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Failure{}
	}
	return classifyAnswer(err)
}

// classifyAnswer explains the errors that may carry GitHub's answer: rate
// limits, 202, two-factor authentication and error responses.
func classifyAnswer(err error) Failure {
	var rle *github.RateLimitError
	if errors.As(err, &rle) {
		return Failure{RateLimited: true, RetryAfter: untilReset(rle.Rate.Reset.Time), StatusCode: statusOf(rle.Response)}
	}
	var are *github.AbuseRateLimitError
	if errors.As(err, &are) {
		wait := secondaryRateLimitWait
		if are.RetryAfter != nil {
			wait = max(*are.RetryAfter, time.Second)
		}
		return Failure{RateLimited: true, RetryAfter: wait, StatusCode: statusOf(are.Response)}
	}
	var acc *github.AcceptedError
	if errors.As(err, &acc) {
		return Failure{StatusCode: http.StatusAccepted} // GitHub is still working on it: ask again
	}
	var tfa *github.TwoFactorAuthError
	if errors.As(err, &tfa) {
		return Failure{Permanent: true, StatusCode: http.StatusUnauthorized}
	}
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return fromResponse(er.Response, er.Message)
	}
	// A failed installation token refresh (ghinstallation) carries GitHub's answer.
	var he *ghinstallation.HTTPError
	if errors.As(err, &he) && he.Response != nil {
		return fromResponse(he.Response, "")
	}
	return Failure{} // no answer from GitHub: transient
}

func statusOf(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

func fromResponse(r *http.Response, message string) Failure {
	code := r.StatusCode
	f := Failure{StatusCode: code}
	switch {
	case code == http.StatusTooManyRequests,
		code == http.StatusForbidden && (r.Header.Get("Retry-After") != "" ||
			r.Header.Get("X-Ratelimit-Remaining") == "0" ||
			strings.Contains(strings.ToLower(message), "rate limit")):
		f.RateLimited = true
		f.RetryAfter = rateLimitWait(r.Header)
	case code >= 500, code == http.StatusRequestTimeout:
		f.RetryAfter = retryAfter(r.Header) // 503 may say when
	case code >= 400:
		f.Permanent = true
	}
	return f
}

// rateLimitWait follows GitHub's guidance: Retry-After if present, else the
// reset time when no requests remain, else at least a minute.
func rateLimitWait(h http.Header) time.Duration {
	if d := retryAfter(h); d > 0 {
		return d
	}
	if h.Get("X-Ratelimit-Remaining") == "0" {
		if s, err := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64); err == nil && s > 0 {
			return untilReset(time.Unix(s, 0))
		}
	}
	return secondaryRateLimitWait
}

func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		return max(time.Duration(s)*time.Second, time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), time.Second)
	}
	return 0
}

// untilReset waits past a primary rate limit's reset, with a second of slack
// for clock skew.
func untilReset(reset time.Time) time.Duration {
	if reset.IsZero() {
		return secondaryRateLimitWait
	}
	return max(time.Until(reset)+time.Second, time.Second)
}
