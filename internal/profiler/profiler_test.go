package profiler_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/drydock-dev/drydock/internal/profiler"
)

func TestProfilerOnlyWhenTurnedOn(t *testing.T) {
	admin := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	get := func(h http.Handler, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	off := profiler.Wrap(admin, false)
	assert.Equal(t, http.StatusTeapot, get(off, "/debug/pprof/"), "off: the admin handler answers everything")
	on := profiler.Wrap(admin, true)
	assert.Equal(t, http.StatusOK, get(on, "/debug/pprof/"))
	assert.Equal(t, http.StatusOK, get(on, "/debug/pprof/heap"))
	assert.Equal(t, http.StatusTeapot, get(on, "/metrics"), "on: the admin endpoints are still the admin handler's")
}
