// Package profiler serves Go's profiler (net/http/pprof) on a binary's
// admin listener when its operator turns it on (WEBHOOK_PPROF,
// ROUTER_PPROF): `make bench -pprof` takes the webhook server's CPU profiles
// and the router's execution traces through it.
//
// It is its own package because importing net/http/pprof also registers
// the handlers on http.DefaultServeMux: only the binaries that import this
// package carry them, and none of them serves DefaultServeMux.
package profiler

import (
	"net/http"
	"net/http/pprof"
)

// Wrap returns admin with the profiler's endpoints added under
// /debug/pprof/ when on, admin itself otherwise. A CPU profile or trace
// must be shorter than the admin listener's write timeout (30 s).
func Wrap(admin http.Handler, on bool) http.Handler {
	if !on {
		return admin
	}
	mux := http.NewServeMux()
	mux.Handle("/", admin)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
