package emulator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
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
	unreaped   map[int]bool // namespace holders killed, not yet reaped (reapHolders)
	counters   counters
	bootDelay  time.Duration
	wakeDelay  time.Duration
	sleepDelay time.Duration
	idem       map[idemKey]*idemRecord

	// overlayOK: machines get an overlay /etc (etcOverlayOK).
	overlayOnce sync.Once
	overlayOK   atomic.Bool

	faultMu sync.Mutex
	// faultsInjected counts requests answered with an injected fault (Stats).
	faultsInjected atomic.Int64
	faults         map[string]FaultRule
	rng            *mrand.Rand
	seed           int64

	// api and local route the API and the control endpoints (routes.go).
	api, local *router

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
		unreaped:   map[int]bool{},
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
	s.api, s.local = s.apiRouter(), s.localRouter()

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
	pgids := map[string]map[int]bool{}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "dm-") {
			pgids[e.Name()] = map[int]bool{}
		}
	}
	for id, left := range killVerifyAll(pgids, 5*time.Second) {
		s.log.Warn("leftover machine processes survived SIGKILL", "machine_id", id, "count", left)
	}
	for _, e := range ents {
		if _, ok := pgids[e.Name()]; !ok {
			continue
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
		for _, p := range m.previews.order {
			p.shut()
		}
	}
	srv := s.httpSrv
	s.mu.Unlock()

	// Every machine's processes at once: one scan of /proc a round, not one
	// per machine (thousands of machines took minutes to shut down).
	pgids := make(map[string]map[int]bool, len(ms))
	s.mu.Lock()
	for _, m := range ms {
		pgids[m.id] = m.pgidSet()
	}
	s.mu.Unlock()
	for id, left := range killVerifyAll(pgids, 5*time.Second) {
		s.log.Warn("processes survived SIGKILL", "machine_id", id, "count", left)
	}
	s.mu.Lock()
	for _, m := range ms {
		m.closePipes()
		s.releaseHolder(m)
	}
	s.mu.Unlock()
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
	s.reapLastHolders(ctx)
	if s.ownDataDir {
		if err := os.RemoveAll(s.dataDir); err != nil {
			errs = append(errs, err)
		}
	}
	s.log.Info("dedalus emulator closed")
	return errors.Join(errs...)
}

// reapLastHolders reaps, after Close killed them, the namespace holders that
// had not exited yet when their machine's processes were released (the
// lifecycle loop, which reaps them otherwise, has stopped). It waits up to
// two seconds, or until ctx ends, and says how many it leaves.
func (s *Server) reapLastHolders(ctx context.Context) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		s.mu.Lock()
		s.reapHolders()
		left := len(s.unreaped)
		s.mu.Unlock()
		if left == 0 {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.log.Warn("namespace holders still running after SIGKILL: not reaped", "count", left)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
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
			s.reapHolders()
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
