package intake_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/intake"
)

// The webhook's public /readyz says 503 and nothing more: the reason a
// readiness check failed (an internal address, a TLS error) is for the admin
// listener and the log, not for whoever can reach the webhook.
func TestPublicReadinessRevealsNoErrorText(t *testing.T) {
	internal := errors.New("dial tcp 10.42.7.9:7233: connect: connection refused (temporal-frontend.internal)")
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Health: health{internal}})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, `{"status":"unavailable"}`+"\n", rec.Body.String())
	assert.NotContains(t, rec.Body.String(), "10.42.7.9")

	h, err = intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Health: health{}})
	require.NoError(t, err)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
}
