package dedalus

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIsQuotaExceeded(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&APIError{StatusCode: 403, Code: "QUOTA_EXCEEDED"}, true},
		{&APIError{StatusCode: 409, Code: "MACHINE_LIMIT_EXCEEDED"}, true},
		{&APIError{StatusCode: 429, Code: "VCPU_LIMIT_REACHED", Retryable: true}, true},
		{fmt.Errorf("create machine: %w", &APIError{StatusCode: 403, Code: "org_quota_exhausted"}), true},
		{&APIError{StatusCode: http.StatusPaymentRequired}, true},
		{&APIError{StatusCode: 422, Problem: &Problem{Type: "https://docs.dedaluslabs.ai/errors/quota", Title: "Unprocessable"}}, true},
		{&APIError{StatusCode: 403, Problem: &Problem{Title: "Machine quota exceeded"}}, true},
		// Transient or unrelated: retried or failed as before.
		{&APIError{StatusCode: 429, Code: "RATE_LIMITED", Retryable: true, Message: "mutation rate limit exceeded"}, false},
		{&APIError{StatusCode: 403, Code: "AUTH_SCOPE_FORBIDDEN"}, false},
		{&APIError{StatusCode: 409, Code: "IDEMPOTENCY_KEY_REUSED"}, false},
		{&APIError{StatusCode: 503, Code: "DEPENDENCY_UNAVAILABLE", Retryable: true}, false},
		{&APIError{StatusCode: 422, Problem: &Problem{Title: "Unprocessable Entity", Detail: "vcpu must be positive"}}, false},
		{errors.New("connection refused"), false},
		{nil, false},
	} {
		assert.Equal(t, c.want, IsQuotaExceeded(c.err), "%v", c.err)
	}
}
