// Package githubtest is an in-memory GitHub REST API for tests, served over
// real HTTP by an httptest.Server. It answers the calls Drydock makes with
// GitHub's paths, status codes, JSON shapes, pagination (Link headers) and
// authentication (personal tokens, GitHub App JWTs and short-lived
// installation tokens), both at / (github.com) and at /api/v3/ (GitHub
// Enterprise Server). It records what happened for assertions and can make
// the next requests to a route fail (502, rate limits).
//
// Routes live in one table (routes.go): adding an endpoint is one line there
// and one handler method.
package githubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is the GitHub API double. Its methods are safe for concurrent use.
type Server struct {
	srv *httptest.Server
	mux *http.ServeMux

	rateMu   sync.Mutex
	rateUsed map[string]int // requests per Authorization header

	mu            sync.Mutex
	nextID        int64
	tokens        map[string]*principal
	users         map[string]User // lower-cased login → account
	oauthApps     map[string]*oauthApp
	oauthCodes    map[string]*oauthCode
	oauthIssued   int
	orgMembers    map[string]map[string]bool // org → member logins, lower case
	apps          map[int64]*app
	installations map[int64]*installation
	tokenTTL      time.Duration
	repos         map[string]*repoState
	faults        map[string][]Fault
	requests      []Request
}

// New starts a Server that is closed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	return s
}

// NewServer starts a Server; Close it when done.
func NewServer() *Server {
	s := &Server{
		mux:           http.NewServeMux(),
		nextID:        1000,
		tokens:        make(map[string]*principal),
		users:         make(map[string]User),
		apps:          make(map[int64]*app),
		installations: make(map[int64]*installation),
		tokenTTL:      time.Hour,
		repos:         make(map[string]*repoState),
		faults:        make(map[string][]Fault),
	}
	for _, rt := range routes {
		s.handle(rt)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		s.setCommonHeaders(rec, r)
		writeError(rec, http.StatusNotFound, "Not Found")
		s.record(r, "", rec.status, "")
	})
	s.srv = httptest.NewServer(s.mux)
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// URL is the github.com-style API base URL, with a trailing slash
// (GITHUB_API_URL).
func (s *Server) URL() string { return s.srv.URL + "/" }

// EnterpriseURL is the GitHub Enterprise Server-style API base URL,
// .../api/v3/ (GITHUB_API_URL for GHES).
func (s *Server) EnterpriseURL() string { return s.srv.URL + "/api/v3/" }

// authKind says how a route authenticates its caller.
type authKind int

const (
	authNone  authKind = iota
	authToken          // a personal token or an installation token
	authApp            // a GitHub App JWT (Authorization: Bearer <JWT>)
)

// route is one entry of the routing table: a Go 1.22 method+path pattern
// (relative to the API root), its authentication and its handler.
type route struct {
	pattern string
	auth    authKind
	handle  func(*Server, *call)
}

// call is one request being answered.
type call struct {
	w          http.ResponseWriter
	r          *http.Request
	who        *principal // authToken routes
	app        *app       // authApp routes
	origin     string     // scheme://host of the server
	apiBase    string     // the API root this request used, no trailing slash (github.com or GHES form)
	enterprise bool
}

func (s *Server) handle(rt route) {
	method, path, ok := strings.Cut(rt.pattern, " ")
	if !ok || !strings.HasPrefix(path, "/") {
		panic("githubtest: route pattern needs a method and a path: " + rt.pattern)
	}
	for _, prefix := range []string{"", "/api/v3"} {
		s.mux.HandleFunc(method+" "+prefix+path, func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w}
			s.setCommonHeaders(rec, r)
			c := &call{w: rec, r: r, enterprise: prefix != ""}
			c.origin, c.apiBase = s.srv.URL, s.srv.URL+prefix
			auth := s.serve(rt, c)
			s.record(r, rt.pattern, rec.status, auth)
		})
	}
}

// serve applies faults and authentication, then the handler. It returns
// the kind of credentials the caller presented, for the request log.
func (s *Server) serve(rt route, c *call) string {
	if f, ok := s.takeFault(rt.pattern); ok {
		f.write(c.w)
		return ""
	}
	auth, refusal := s.authenticate(rt.auth, c)
	if refusal != "" {
		writeError(c.w, http.StatusUnauthorized, refusal)
		return ""
	}
	rt.handle(s, c)
	return auth
}

// authenticate checks the caller's credentials as the route asks: it sets
// c.who or c.app and returns their kind ("user", "installation", "app"),
// or the message a 401 refusal gives.
func (s *Server) authenticate(kind authKind, c *call) (auth, refusal string) {
	header := c.r.Header.Get("Authorization")
	switch kind {
	case authToken:
		who, msg := s.authenticateToken(header)
		if who == nil {
			return "", msg
		}
		c.who = who
		s.mu.Lock()
		scopes := who.scopes
		s.mu.Unlock()
		if scopes != nil { // a classic token: GitHub lists its scopes
			c.w.Header().Set("X-OAuth-Scopes", strings.Join(scopes, ", "))
		}
		return who.kind, ""
	case authApp:
		a, msg := s.authenticateApp(header)
		if a == nil {
			return "", msg
		}
		c.app = a
		return "app", ""
	}
	return "", ""
}

func (s *Server) setCommonHeaders(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	h.Set("X-GitHub-Request-Id", fmt.Sprintf("DRYDOCK:%d", time.Now().UnixNano()))
	// Like GitHub, each credential has its own budget of 5,000 requests an
	// hour, and every answer says how much is left.
	s.rateMu.Lock()
	if s.rateUsed == nil {
		s.rateUsed = make(map[string]int)
	}
	cred := r.Header.Get("Authorization")
	if f := strings.Fields(cred); len(f) == 2 {
		cred = f[1] // "token X" and "Bearer X" are one credential
	}
	s.rateUsed[cred]++
	used := min(s.rateUsed[cred], 5000)
	s.rateMu.Unlock()
	h.Set("X-RateLimit-Limit", "5000")
	h.Set("X-RateLimit-Remaining", strconv.Itoa(5000-used))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
	h.Set("X-RateLimit-Used", strconv.Itoa(used))
	h.Set("X-RateLimit-Resource", "core")
}

// Request is one request the server answered.
type Request struct {
	Route      string // the route pattern, e.g. RouteCreateDeployment; "" when none matched
	Method     string
	Path       string // as sent, including /api/v3 for GHES
	Query      string
	Status     int
	Auth       string // "user", "installation", "app" (JWT) or "" (none or rejected)
	Enterprise bool   // sent under /api/v3/
}

func (s *Server) record(r *http.Request, pattern string, status int, auth string) {
	if status == 0 {
		status = http.StatusOK
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{
		Route: pattern, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: status,
		Auth: auth, Enterprise: strings.HasPrefix(r.URL.Path, "/api/v3/"),
	})
}

// Requests returns every request answered so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count is how many requests route answered (whatever the status). Use the
// Route constants; "" counts requests that matched no route.
func (s *Server) Count(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Route == route {
			n++
		}
	}
	return n
}

// ResetRequests forgets the request log.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// now is the server's clock: UTC, whole seconds, as GitHub reports times.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

// id hands out IDs; GitHub's are unique across object kinds too. Callers hold s.mu.
func (s *Server) id() int64 {
	s.nextID++
	return s.nextID
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

const docsURL = "https://docs.github.com/rest"

// writeError answers in GitHub's error shape.
func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]any{"message": message, "documentation_url": docsURL, "status": strconv.Itoa(status)})
}

// writeValidation answers 422 the way GitHub reports invalid fields.
func writeValidation(w http.ResponseWriter, message, resource, field, code string) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
		"message":           message,
		"errors":            []map[string]string{{"resource": resource, "field": field, "code": code}},
		"documentation_url": docsURL,
		"status":            "422",
	})
}

// decodeBody reads a JSON request body (GitHub answers 400 "Problems parsing JSON").
func decodeBody(c *call, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(c.w, c.r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		writeError(c.w, http.StatusBadRequest, "Problems parsing JSON")
		return false
	}
	return true
}

// paginate answers one page of items as GitHub does: per_page (default 30,
// at most 100) and page (from 1), with a Link header naming the next, last,
// first and prev pages.
func paginate[T any](c *call, items []T) []T {
	q := c.r.URL.Query()
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per <= 0 {
		per = 30
	}
	per = min(per, 100)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page <= 0 {
		page = 1
	}
	last := max(1, (len(items)+per-1)/per)
	link := func(p int, rel string) string {
		qq := url.Values{}
		for k, vs := range q {
			qq[k] = vs
		}
		qq.Set("per_page", strconv.Itoa(per))
		qq.Set("page", strconv.Itoa(p))
		return fmt.Sprintf("<%s%s?%s>; rel=%q", c.origin, c.r.URL.EscapedPath(), qq.Encode(), rel)
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(min(page-1, last), "prev"))
	}
	if len(links) > 0 {
		c.w.Header().Set("Link", strings.Join(links, ", "))
	}
	start := (page - 1) * per
	if start >= len(items) {
		return []T{}
	}
	return items[start:min(start+per, len(items))]
}
