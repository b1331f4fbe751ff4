package emulator

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// router is a ServeMux that answers like the emulator where ServeMux would
// answer by itself: no redirects to a cleaned path, and a problem body (not
// ServeMux's plain text) for an unknown path or a wrong method.
//
// ServeMux cleans a path before matching it and redirects a request whose
// path it changed; the emulator has always routed a path by its segments
// as sent, leading and trailing slashes dropped ("/v1/machines/" lists
// machines, "/v1/machines/.." names machine ".."). So serve hands ServeMux
// a request whose path is those segments, each escaped so that ServeMux
// neither splits nor cleans it (wildcards come back unescaped), and the
// handlers get the request back with its URL as sent.
type router struct {
	mux *http.ServeMux
	// methods are the table's methods in the order they first appear in
	// it: the order Allow lists them in.
	methods []string
	// allow: a 405 answer carries Allow. exact: a path with a trailing
	// slash is not routed.
	allow, exact bool
}

func newRouter(allow, exact bool) *router {
	rt := &router{mux: http.NewServeMux(), allow: allow, exact: exact}
	rt.mux.HandleFunc("/", rt.notRouted)
	return rt
}

// handle routes pattern ("METHOD /path/{wildcard}") to h.
func (rt *router) handle(pattern string, h http.HandlerFunc) {
	method, _, _ := strings.Cut(pattern, " ")
	if !slices.Contains(rt.methods, method) {
		rt.methods = append(rt.methods, method)
	}
	rt.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method { // ServeMux lets HEAD through to a GET route
			rt.notRouted(w, r)
			return
		}
		sent := sentOf(r)
		r.URL, r.RequestURI = sent.url, sent.requestURI
		h(w, r)
	})
}

// sent is a request as it reached the emulator, before routing.
type sent struct {
	url        *url.URL
	requestURI string
	arrived    time.Time
}

type sentKey struct{}

func sentOf(r *http.Request) sent { return r.Context().Value(sentKey{}).(sent) }

// arrivedAt is when the request reached the emulator.
func arrivedAt(r *http.Request) time.Time { return sentOf(r).arrived }

// serve routes r by the segments of its path.
func (rt *router) serve(w http.ResponseWriter, r *http.Request, arrived time.Time) {
	path, raw, ok := routingPath(r.URL.Path)
	if !ok || (rt.exact && path != r.URL.Path) {
		writeAPIError(w, problem(http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)))
		return
	}
	routed := r.WithContext(context.WithValue(r.Context(), sentKey{}, sent{url: r.URL, requestURI: r.RequestURI, arrived: arrived}))
	u := *r.URL
	u.Path, u.RawPath = path, raw
	routed.URL = &u
	routed.RequestURI = u.RequestURI() // ServeMux answers "*" 400 itself
	rt.mux.ServeHTTP(w, routed)
}

// routingPath is the path ServeMux routes a request by: the segments of
// path without its leading and trailing slashes, unescaped and escaped.
// Dot segments are escaped too, which keeps ServeMux from cleaning them
// away. ok is false when a segment is empty: no route matches it.
func routingPath(path string) (unescaped, escaped string, ok bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var un, esc strings.Builder
	for _, seg := range segs {
		if seg == "" {
			return "", "", false
		}
		un.WriteString("/" + seg)
		switch seg {
		case ".", "..":
			esc.WriteString("/" + strings.Repeat("%2E", len(seg)))
		default:
			esc.WriteString("/" + url.PathEscape(seg))
		}
	}
	return un.String(), esc.String(), true
}

// notRouted answers a request no route takes: 405 when its path takes
// other methods, else 404. r is the routed request.
func (rt *router) notRouted(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range rt.methods {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host}
		if _, pattern := rt.mux.Handler(probe); pattern != "/" {
			allowed = append(allowed, m)
		}
	}
	path := sentOf(r).url.Path
	if len(allowed) == 0 {
		writeAPIError(w, problem(http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, path)))
		return
	}
	if rt.allow {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
	}
	writeAPIError(w, problem(http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, path)))
}
