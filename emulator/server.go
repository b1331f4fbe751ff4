package emulator

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/loopback"
)

const (
	tickInterval      = 100 * time.Millisecond
	keepaliveInterval = 15 * time.Second
	inflightRetryMS   = 250
)

// Server is a running emulator. Create it with New, then either Start it (it
// listens on Config.Addr) or mount Handler() yourself; always Close it.
type Server struct {
	cfg        Config
	log        *slog.Logger
	dataDir    string
	ownDataDir bool
	keepalive  time.Duration

	mu         sync.Mutex
	closed     bool
	machines   map[string]*machine
	order      []*machine // creation order, tombstones included until they expire
	seq        int64
	usedPorts  map[int]bool
	counters   counters
	bootDelay  time.Duration
	wakeDelay  time.Duration
	sleepDelay time.Duration
	idem       map[idemKey]*idemRecord

	faultMu sync.Mutex
	// faultsInjected counts requests answered with an injected fault (Stats).
	faultsInjected atomic.Int64
	faults         map[string]FaultRule
	rng            *mrand.Rand
	seed           int64

	httpSrv *http.Server
	url     string

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// New builds a Server from cfg (zero fields take their defaults). It creates
// the data directory and starts the background lifecycle loop, but does not
// listen: call Start, or serve Handler().
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := checkLoopback(cfg.Addr); err != nil {
		return nil, err
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "dedalus-emulator"),
		keepalive:  cmp.Or(cfg.keepalive, keepaliveInterval),
		machines:   map[string]*machine{},
		usedPorts:  map[int]bool{},
		bootDelay:  cfg.BootDelay,
		wakeDelay:  cfg.WakeDelay,
		sleepDelay: cfg.SleepDelay,
		idem:       map[idemKey]*idemRecord{},
		faults:     map[string]FaultRule{},
		done:       make(chan struct{}),
	}
	s.seed = cfg.Seed
	if s.seed == 0 {
		s.seed = time.Now().UnixNano()
	}
	s.rng = mrand.New(mrand.NewPCG(uint64(s.seed), uint64(s.seed)^0x9e3779b97f4a7c15))
	s.applyFaults(cfg.Faults)

	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "dedalus-emulator-*")
		if err != nil {
			return nil, fmt.Errorf("emulator: data dir: %w", err)
		}
		s.dataDir, s.ownDataDir = dir, true
	} else {
		dir, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("emulator: data dir: %w", err)
		}
		s.dataDir = dir
	}
	if err := os.MkdirAll(filepath.Join(s.dataDir, "machines"), 0o755); err != nil {
		if s.ownDataDir {
			_ = os.RemoveAll(s.dataDir)
		}
		return nil, fmt.Errorf("emulator: data dir: %w", err)
	}
	if !s.ownDataDir {
		s.reapLeftovers()
	}
	s.mu.Lock()
	s.goroutine(s.loop)
	s.mu.Unlock()
	return s, nil
}

// reapLeftovers removes the machines a previous run left in the data
// directory (machines do not survive a restart), killing their processes.
func (s *Server) reapLeftovers() {
	dir := filepath.Join(s.dataDir, "machines")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "dm-") {
			continue
		}
		if left := killVerify(e.Name(), map[int]bool{}, 5*time.Second); left > 0 {
			s.log.Warn("leftover machine processes survived SIGKILL", "machine_id", e.Name(), "count", left)
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			s.log.Warn("removing leftover machine", "machine_id", e.Name(), "err", err)
			continue
		}
		s.log.Info("removed machine left by a previous run", "machine_id", e.Name())
	}
}

// Start listens on Config.Addr and serves the API in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("emulator: listen: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ln.Close()
		return errors.New("emulator: server is closed")
	}
	if s.httpSrv != nil {
		ln.Close()
		return errors.New("emulator: already started")
	}
	s.httpSrv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.url = "http://" + ln.Addr().String()
	srv := s.httpSrv
	s.goroutine(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	})
	s.log.Info("dedalus emulator listening", "url", s.url, "data_dir", s.dataDir, "seed", s.seed,
		"boot_delay", s.cfg.BootDelay, "wake_delay", s.cfg.WakeDelay, "sleep_delay", s.cfg.SleepDelay)
	return nil
}

// URL is the base URL of the started server ("http://127.0.0.1:8788").
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// APIKey is the API key the server accepts.
func (s *Server) APIKey() string { return s.cfg.APIKey }

// DataDir is the directory holding the machines.
func (s *Server) DataDir() string { return s.dataDir }

// Handler serves the API and the /_local control endpoints.
func (s *Server) Handler() http.Handler { return s }

// Close stops the server: it stops listening, kills every machine's
// processes, closes the preview listeners, waits for its goroutines and removes
// the data directory if New created it.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Server) close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	close(s.done)
	var ms []*machine
	for _, m := range s.order {
		ms = append(ms, m)
		for _, p := range m.previewOrder {
			p.shut()
		}
	}
	srv := s.httpSrv
	s.mu.Unlock()

	for _, m := range ms {
		s.mu.Lock()
		pg := m.pgidSet()
		s.mu.Unlock()
		if left := killVerify(m.id, pg, 5*time.Second); left > 0 {
			s.log.Warn("processes survived SIGKILL", "machine_id", m.id, "count", left)
		}
		s.mu.Lock()
		m.closePipes()
		s.mu.Unlock()
	}
	var errs []error
	if srv != nil {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			srv.Close()
		}
	}
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("emulator: waiting for goroutines: %w", ctx.Err()))
	}
	if s.ownDataDir {
		if err := os.RemoveAll(s.dataDir); err != nil {
			errs = append(errs, err)
		}
	}
	s.log.Info("dedalus emulator closed")
	return errors.Join(errs...)
}

// goroutine runs fn in a goroutine tracked by Close. Call with s.mu held.
func (s *Server) goroutine(fn func()) bool {
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// sleepCtx waits d, or until ctx is done or the server closes.
func (s *Server) sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// loop drives autosleep and expiry.
func (s *Server) loop() {
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		n++
		s.mu.Lock()
		now := time.Now()
		s.autosleepTick(now)
		if n%10 == 0 {
			s.expire(now)
		}
		s.mu.Unlock()
	}
}

// expire drops tombstones and idempotency records past their TTL. Call with s.mu held.
func (s *Server) expire(now time.Time) {
	kept := s.order[:0]
	for _, m := range s.order {
		if m.phase == dedalus.PhaseDestroyed && now.Sub(m.destroyedAt) > s.cfg.TombstoneTTL {
			delete(s.machines, m.id)
			continue
		}
		kept = append(kept, m)
	}
	for i := len(kept); i < len(s.order); i++ {
		s.order[i] = nil
	}
	s.order = kept
	for k, r := range s.idem {
		if !r.inflight && now.Sub(r.at) > s.cfg.IdempotencyTTL {
			delete(s.idem, k)
		}
	}
	// Forget process groups that have emptied, so a recycled id never matches.
	for _, m := range s.order {
		for g := range m.pgids {
			if errors.Is(syscall.Kill(-g, 0), syscall.ESRCH) {
				delete(m.pgids, g)
			}
		}
	}
}

// ---- routing ----

type call struct {
	r      *http.Request
	params map[string]string
	body   []byte
	header http.Header // extra response headers
}

func (c *call) param(n string) string { return c.params[n] }

type handlerFunc func(s *Server, c *call) (int, any, error)

type route struct {
	method  string
	pattern []string
	op      string
	idem    bool
	h       handlerFunc
	stream  func(s *Server, w http.ResponseWriter, c *call)
	segsLen int
}

var routes = func() []*route {
	r := func(method, pattern, op string, idem bool, h handlerFunc) *route {
		segs := strings.Split(strings.Trim(pattern, "/"), "/")
		return &route{method: method, pattern: segs, op: op, idem: idem, h: h, segsLen: len(segs)}
	}
	list := []*route{
		r("GET", "/v1/machines", "listMachines", false, (*Server).listMachines),
		r("POST", "/v1/machines", "createMachine", true, (*Server).createMachine),
		r("GET", "/v1/machines/{machine_id}", "getMachine", false, (*Server).getMachine),
		r("PATCH", "/v1/machines/{machine_id}", "patchMachine", true, (*Server).patchMachine),
		r("DELETE", "/v1/machines/{machine_id}", "deleteMachine", true, (*Server).deleteMachine),
		r("POST", "/v1/machines/{machine_id}/sleep", "sleepMachine", true, (*Server).sleepMachine),
		r("POST", "/v1/machines/{machine_id}/wake", "wakeMachine", true, (*Server).wakeMachine),
		r("GET", "/v1/machines/{machine_id}/status/stream", "watchMachineStatus", false, nil),
		r("GET", "/v1/machines/{machine_id}/executions", "listMachineExecutions", false, (*Server).listExecutions),
		r("POST", "/v1/machines/{machine_id}/executions", "createMachineExecution", true, (*Server).createExecution),
		r("GET", "/v1/machines/{machine_id}/executions/{execution_id}", "getMachineExecution", false, (*Server).getExecution),
		r("DELETE", "/v1/machines/{machine_id}/executions/{execution_id}", "deleteMachineExecution", false, (*Server).deleteExecution),
		r("GET", "/v1/machines/{machine_id}/executions/{execution_id}/output", "getMachineExecutionOutput", false, (*Server).getExecutionOutput),
		r("GET", "/v1/machines/{machine_id}/executions/{execution_id}/events", "listMachineExecutionEvents", false, (*Server).listExecutionEvents),
		r("GET", "/v1/machines/{machine_id}/previews", "listMachinePreviews", false, (*Server).listPreviews),
		r("POST", "/v1/machines/{machine_id}/previews", "createMachinePreview", true, (*Server).createPreview),
		r("GET", "/v1/machines/{machine_id}/previews/{preview_id}", "getMachinePreview", false, (*Server).getPreview),
		r("DELETE", "/v1/machines/{machine_id}/previews/{preview_id}", "deleteMachinePreview", false, (*Server).deletePreview),
	}
	list[7].stream = (*Server).watchStatus
	return list
}()

// Operations lists the operationIds fault rules can name.
func Operations() []string {
	out := make([]string, len(routes))
	for i, r := range routes {
		out[i] = r.op
	}
	return out
}

func knownOperation(op string) bool {
	for _, r := range routes {
		if r.op == op {
			return true
		}
	}
	return false
}

func matchRoute(method, path string) (*route, map[string]string, []string) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var allowed []string
	for _, rt := range routes {
		if rt.segsLen != len(segs) {
			continue
		}
		params := map[string]string{}
		ok := true
		for i, p := range rt.pattern {
			if strings.HasPrefix(p, "{") {
				if segs[i] == "" {
					ok = false
					break
				}
				params[strings.Trim(p, "{}")] = segs[i]
			} else if p != segs[i] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if rt.method == method {
			return rt, params, nil
		}
		allowed = append(allowed, rt.method)
	}
	return nil, nil, allowed
}

// ServeHTTP implements http.Handler. Requests whose Host is not a loopback
// name or address (DNS rebinding) are answered 421 and do nothing.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	// DNS rebinding: a page on evil.example whose name now resolves to
	// 127.0.0.1 reaches this port, but still says Host: evil.example.
	if !loopback.HostAllowed(r.Host, s.cfg.Addr) {
		writeAPIError(w, problem(http.StatusMisdirectedRequest, loopback.Refusal))
		return
	}
	if r.URL.Path == "/_local" || strings.HasPrefix(r.URL.Path, "/_local/") {
		s.serveLocal(w, r)
		return
	}
	rt, params, allowed := matchRoute(r.Method, r.URL.Path)
	if rt == nil {
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeAPIError(w, problem(http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)))
			return
		}
		writeAPIError(w, problem(http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)))
		return
	}
	apiKey, aerr := s.authenticate(r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if s.cfg.Observe != nil {
		s.cfg.Observe(rt.op, params["machine_id"], arrived)
	}
	f := s.roll(rt.op)
	if f.reset {
		s.log.Debug("fault: reset before processing", "op", rt.op)
		resetConn(w)
		return
	}
	if f.err != nil {
		s.log.Debug("fault: injected error", "op", rt.op, "status", f.err.status)
		writeAPIError(w, f.err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeAPIError(w, problem(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", MaxBodyBytes)))
			return
		}
		writeAPIError(w, problem(http.StatusBadRequest, "reading request body: "+err.Error()))
		return
	}
	c := &call{r: r, params: params, body: body, header: http.Header{}}

	if rt.stream != nil {
		if !s.sleepCtx(r.Context(), f.latency) {
			return
		}
		if f.resetAfter {
			resetConn(w)
			return
		}
		rt.stream(s, w, c)
		return
	}

	var ik idemKey
	settled := false
	if rt.idem {
		key := r.Header.Get(dedalus.HeaderIdempotencyKey)
		if strings.TrimSpace(key) == "" {
			writeAPIError(w, problem(http.StatusBadRequest, "Idempotency-Key header is required",
				dedalus.ProblemDetail{Location: "header.Idempotency-Key", Message: "required header is missing"}))
			return
		}
		ik = idemKey{scope: scopeOf(apiKey), key: key}
		fp := fingerprint(r.Method, r.URL.Path, body)
		replay, ierr := s.idemBegin(ik, fp)
		if ierr != nil {
			writeAPIError(w, ierr)
			return
		}
		if replay != nil {
			s.log.Debug("idempotent replay", "op", rt.op)
			if f.resetAfter {
				resetConn(w)
				return
			}
			replay.writeTo(w)
			return
		}
		defer func() {
			if !settled { // the handler panicked: release the key
				s.idemFinish(ik, nil)
			}
		}()
	}
	rec := newRecorder()
	if s.sleepCtx(r.Context(), f.latency) {
		status, v, err := rt.h(s, c)
		for k, vs := range c.header {
			rec.Header()[k] = vs
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				s.log.Error("handler failed", "op", rt.op, "err", err)
				ae = problem(http.StatusInternalServerError, err.Error())
			}
			writeAPIError(rec, ae)
		} else {
			writeJSON(rec, status, v)
		}
	} else {
		writeAPIError(rec, errBody(http.StatusServiceUnavailable, dedalus.CodeDependencyUnavailable, "request cancelled", true, 0, nil))
	}
	resp := rec.stored()
	if rt.idem {
		if resp.status >= 200 && resp.status < 300 {
			s.idemFinish(ik, resp)
		} else {
			s.idemFinish(ik, nil)
		}
		settled = true
	}
	if f.resetAfter {
		s.log.Debug("fault: reset after processing", "op", rt.op)
		resetConn(w)
		return
	}
	resp.writeTo(w)
}

// resetConn aborts the connection with a TCP RST (or, without a hijackable
// connection, aborts the handler).
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (s *Server) authenticate(r *http.Request) (string, *apiError) {
	key := ""
	authz := strings.TrimSpace(r.Header.Get("Authorization"))
	badScheme := false
	if authz != "" {
		if len(authz) > 7 && strings.EqualFold(authz[:7], "bearer ") {
			key = strings.TrimSpace(authz[7:])
		} else {
			badScheme = true
		}
	}
	if key == "" {
		key = strings.TrimSpace(r.Header.Get(dedalus.HeaderAPIKey))
	}
	if key == "" {
		if badScheme {
			return "", errBody(http.StatusUnauthorized, dedalus.CodeAuthInvalid, "invalid Dedalus API key", false, 0, nil)
		}
		return "", errBody(http.StatusUnauthorized, dedalus.CodeAuthRequired, "missing Dedalus API key", false, 0, nil)
	}
	if subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.APIKey)) != 1 {
		return "", errBody(http.StatusUnauthorized, dedalus.CodeAuthInvalid, "invalid Dedalus API key", false, 0, nil)
	}
	if org := r.Header.Get(dedalus.HeaderOrgID); s.cfg.OrgID != "" && org != "" && org != s.cfg.OrgID {
		return "", errBody(http.StatusForbidden, dedalus.CodeAuthOrgMismatch, "org scope does not match API key ownership", false, 0, nil)
	}
	return key, nil
}

// ---- idempotency ----

type idemKey struct{ scope, key string }

type idemRecord struct {
	fp       string
	inflight bool
	resp     *storedResponse
	at       time.Time
}

func scopeOf(apiKey string) string {
	h := sha256.Sum256([]byte(apiKey))
	return hex.EncodeToString(h[:8])
}

// fingerprint hashes method, path and the canonical JSON body.
func fingerprint(method, path string, body []byte) string {
	canon := body
	if len(strings.TrimSpace(string(body))) > 0 {
		var v any
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.UseNumber()
		if err := dec.Decode(&v); err == nil {
			if b, err := json.Marshal(v); err == nil {
				canon = b
			}
		}
	} else {
		canon = nil
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", method, path)
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (s *Server) idemBegin(k idemKey, fp string) (*storedResponse, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.idem[k]; r != nil {
		if !r.inflight && time.Since(r.at) > s.cfg.IdempotencyTTL {
			delete(s.idem, k)
		} else {
			if r.fp != fp {
				return nil, errBody(http.StatusConflict, dedalus.CodeIdempotencyKeyReused,
					"idempotency key reused with different request parameters", false, 0,
					map[string]string{"expected_request_hash": r.fp, "provided_request_hash": fp})
			}
			if r.inflight {
				return nil, errBody(http.StatusTooManyRequests, dedalus.CodeRateLimited,
					"idempotency key is already in-flight", true, inflightRetryMS, nil)
			}
			s.counters.IdempotentReplays++
			return r.resp, nil
		}
	}
	s.idem[k] = &idemRecord{fp: fp, inflight: true, at: time.Now()}
	return nil, nil
}

func (s *Server) idemFinish(k idemKey, resp *storedResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp == nil {
		delete(s.idem, k)
		return
	}
	if r := s.idem[k]; r != nil {
		r.inflight, r.resp, r.at = false, resp, time.Now()
	}
}

// ---- fault injection ----

type rolled struct {
	reset, resetAfter bool
	err               *apiError
	latency           time.Duration
}

func (s *Server) roll(op string) rolled {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	rule, ok := s.faults[op]
	if !ok {
		rule, ok = s.faults["*"]
	}
	if !ok {
		return rolled{}
	}
	hit := func(p float64) bool { return p > 0 && s.rng.Float64() < p }
	var f rolled
	f.latency = time.Duration(rule.LatencyMS) * time.Millisecond
	switch {
	case hit(rule.Reset):
		f.reset = true
	case hit(rule.Error503):
		f.err = errBody(http.StatusServiceUnavailable, dedalus.CodeDependencyUnavailable, "runtime unavailable", true, 0, nil)
	case hit(rule.Error429):
		ra := rule.RetryAfterMS
		if ra == 0 {
			ra = DefaultRetryAfterMS
		}
		f.err = errBody(http.StatusTooManyRequests, dedalus.CodeRateLimited, "mutation rate limit exceeded", true, ra, nil)
	case hit(rule.ResetAfter):
		f.resetAfter = true
	}
	if f.reset || f.err != nil || f.resetAfter {
		s.faultsInjected.Add(1)
	}
	return f
}

func (s *Server) applyFaults(f Faults) {
	s.faultMu.Lock()
	s.faults = map[string]FaultRule{}
	for k, v := range f.Routes {
		s.faults[k] = v
	}
	s.faultMu.Unlock()
	s.mu.Lock()
	if f.BootDelay != nil {
		s.bootDelay = time.Duration(*f.BootDelay)
	}
	if f.WakeDelay != nil {
		s.wakeDelay = time.Duration(*f.WakeDelay)
	}
	if f.SleepDelay != nil {
		s.sleepDelay = time.Duration(*f.SleepDelay)
	}
	s.mu.Unlock()
}

// SetFaults replaces the fault-injection rules; nil delays keep their value.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.applyFaults(f)
	s.log.Info("faults updated", "routes", len(f.Routes))
	return nil
}

// Faults returns the current fault-injection configuration, delays included.
func (s *Server) Faults() Faults {
	var f Faults
	s.faultMu.Lock()
	f.Routes = make(map[string]FaultRule, len(s.faults))
	for k, v := range s.faults {
		f.Routes[k] = v
	}
	s.faultMu.Unlock()
	s.mu.Lock()
	f.BootDelay, f.WakeDelay, f.SleepDelay = D(s.bootDelay), D(s.wakeDelay), D(s.sleepDelay)
	s.mu.Unlock()
	return f
}

// ---- /_local ----

func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request) {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() {
			writeAPIError(w, problem(http.StatusForbidden, "/_local is only served to loopback clients"))
			return
		}
	}
	type ep struct{ method, path string }
	switch (ep{r.Method, r.URL.Path}) {
	case ep{"GET", "/_local/stats"}:
		writeJSON(w, http.StatusOK, s.Stats())
	case ep{"POST", "/_local/stats/reset"}:
		s.ResetStats()
		writeJSON(w, http.StatusOK, s.Stats())
	case ep{"GET", "/_local/faults"}:
		writeJSON(w, http.StatusOK, s.Faults())
	case ep{"PUT", "/_local/faults"}:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			writeAPIError(w, problem(http.StatusBadRequest, "reading body: "+err.Error()))
			return
		}
		var f Faults
		if ae := decodeBody(body, &f); ae != nil {
			writeAPIError(w, ae)
			return
		}
		if err := s.SetFaults(f); err != nil {
			writeAPIError(w, problem(http.StatusBadRequest, err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, s.Faults())
	default:
		switch r.URL.Path {
		case "/_local/stats", "/_local/stats/reset", "/_local/faults":
			writeAPIError(w, problem(http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)))
		default:
			writeAPIError(w, problem(http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)))
		}
	}
}

// ---- ids and paging ----

func newID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

const (
	defaultLimit = 50
	maxLimit     = 200
)

// pageParams parses limit and cursor. The cursor is an opaque token holding
// the creation sequence of the last item returned.
func pageParams(r *http.Request) (int, int64, *apiError) {
	q := r.URL.Query()
	limit := defaultLimit
	if v := q.Get("limit"); v != "" {
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err != nil || fmt.Sprint(n) != v || n < 0 {
			return 0, 0, validation("query.limit", "must be a non-negative integer", v)
		}
		if n > 0 {
			limit = min(n, maxLimit)
		}
	}
	var after int64
	if v := q.Get("cursor"); v != "" {
		var ok bool
		after, ok = decodeCursor(v)
		if !ok {
			return 0, 0, validation("query.cursor", "invalid cursor", v)
		}
	}
	return limit, after, nil
}

func encodeCursor(seq int64) string {
	return hex.EncodeToString([]byte(fmt.Sprintf("c1:%d", seq)))
}

func decodeCursor(s string) (int64, bool) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return 0, false
	}
	var n int64
	if _, err := fmt.Sscanf(string(b), "c1:%d", &n); err != nil || encodeCursor(n) != s || n < 0 {
		return 0, false
	}
	return n, true
}

// paginate returns the items with seq > after, at most limit, and the next cursor.
func paginate[T any](all []T, seq func(T) int64, limit int, after int64) ([]T, string) {
	i := sort.Search(len(all), func(i int) bool { return seq(all[i]) > after })
	out := make([]T, 0, min(limit, len(all)-i))
	for ; i < len(all) && len(out) < limit; i++ {
		out = append(out, all[i])
	}
	next := ""
	if i < len(all) && len(out) > 0 {
		next = encodeCursor(seq(out[len(out)-1]))
	}
	return out, next
}
