package loopback_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/drydock-dev/drydock/internal/loopback"
)

func TestCheckListen(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:8080", "127.0.0.2:1", "[::1]:8080", "localhost:8080"} {
		assert.NoError(t, loopback.CheckListen("WEBHOOK_ADDR", ok), ok)
	}
	for _, bad := range []string{":8080", "0.0.0.0:8080", "[::]:8080", "192.168.1.20:8080", "10.0.0.1:80", "example.com:80", "8080"} {
		assert.ErrorContains(t, loopback.CheckListen("WEBHOOK_ADDR", bad), "WEBHOOK_ADDR", bad)
	}
}

// A DNS-rebinding request (the attacker's name resolved to 127.0.0.1) still
// carries the attacker's Host: refused with 421 before the handler runs.
func TestGuardRefusesOtherHosts(t *testing.T) {
	served := 0
	g := loopback.Guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }), "127.0.0.1:8080")
	for _, host := range []string{"evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil.example",
		"pr-1--a--b.preview.localhost:8080", "192.168.1.20:8080", "", "0.0.0.0:8080"} {
		req := httptest.NewRequest("POST", "/webhooks/github", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusMisdirectedRequest, rec.Code, host)
	}
	assert.Zero(t, served, "the handler never saw them")
	for _, host := range []string{"127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "127.0.0.1"} {
		req := httptest.NewRequest("POST", "/webhooks/github", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusOK, rec.Code, host)
	}
	assert.Equal(t, 5, served)
	// A listen host that is a name is accepted too.
	g = loopback.Guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }), "devbox.localhost:8080")
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "devbox.localhost:8080"
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusOK, rec.Code)
}
