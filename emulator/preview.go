package emulator

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

// preview is one preview of a machine: a loopback reverse proxy to the
// machine's app port. Its fields are guarded by Server.mu.
type preview struct {
	id         string
	seq        int64
	m          *machine
	port       int64
	protocol   string
	visibility string
	createdAt  time.Time
	readyAt    time.Time // when the machine first ran with this preview (see markReady)
	url        string
	closed     bool

	srv   *http.Server
	ln    *trackingListener
	trans *http.Transport
}

func (p *preview) response() dedalus.Preview {
	st := dedalus.PreviewWakeInProgress
	switch {
	case p.closed:
		st = dedalus.PreviewClosed
	case p.m.phase == dedalus.PhaseRunning:
		st = dedalus.PreviewReady
	}
	return dedalus.Preview{
		PreviewID:  p.id,
		MachineID:  p.m.id,
		Status:     st,
		Port:       p.port,
		Visibility: p.visibility,
		CreatedAt:  p.createdAt,
		Protocol:   p.protocol,
		URL:        p.url,
		ReadyAt:    p.readyAt,
	}
}

// markReady records when the machine became ready for previews created
// before it ran (ready_at is set once). Call with s.mu held.
func (m *machine) markReady(at time.Time) {
	for _, p := range m.previewOrder {
		if !p.closed && p.readyAt.IsZero() {
			p.readyAt = at
		}
	}
}

// shut closes the preview's listener and every connection it accepted
// (upgraded WebSocket connections included). Call with s.mu held.
func (p *preview) shut() {
	if p.closed {
		return
	}
	p.closed = true
	_ = p.srv.Close()
	p.ln.closeAll()
	p.trans.CloseIdleConnections()
}

// trackingListener remembers its connections so that they can all be closed,
// hijacked ones included.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	_ = l.Listener.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}

// ServeHTTP proxies one request to the machine's app, or answers 503 while
// the machine is not running.
func (s *Server) servePreview(p *preview, proxy *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m := p.m
	closed, phase := p.closed, m.phase
	if !closed && phase == dedalus.PhaseRunning {
		m.activeProxies++
		m.lastActivity = time.Now()
	}
	s.mu.Unlock()
	if closed {
		http.Error(w, "preview closed", http.StatusNotFound)
		return
	}
	if phase != dedalus.PhaseRunning {
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("machine %s is not running (phase %s); wake it and retry", m.id, phase), http.StatusServiceUnavailable)
		return
	}
	defer func() {
		s.mu.Lock()
		m.activeProxies--
		m.lastActivity = time.Now()
		s.mu.Unlock()
	}()
	proxy.ServeHTTP(w, r)
}

type createPreviewBody struct {
	Port       *int64  `json:"port"`
	Protocol   *string `json:"protocol"`
	Visibility *string `json:"visibility"`
}

func (s *Server) createPreview(c *call) (int, any, error) {
	var b createPreviewBody
	if err := decodeBody(c.body, &b); err != nil {
		return 0, nil, err
	}
	if b.Port == nil {
		return 0, nil, validation("body.port", "required property is missing", nil)
	}
	if *b.Port < 1 || *b.Port > 65535 {
		return 0, nil, validation("body.port", "must be between 1 and 65535", *b.Port)
	}
	protocol := dedalus.ProtocolHTTP
	if b.Protocol != nil {
		protocol = *b.Protocol
		if protocol != dedalus.ProtocolHTTP && protocol != dedalus.ProtocolHTTPS {
			return 0, nil, validation("body.protocol", "must be one of http, https", protocol)
		}
	}
	visibility := dedalus.VisibilityPublic
	if b.Visibility != nil {
		visibility = *b.Visibility
		switch visibility {
		case dedalus.VisibilityPublic, dedalus.VisibilityPrivate, dedalus.VisibilityOrg:
		default:
			return 0, nil, validation("body.visibility", "must be one of public, private, org", visibility)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return 0, nil, err
	}
	switch m.phase {
	case dedalus.PhaseDestroying, dedalus.PhaseDestroyed, dedalus.PhaseFailed:
		return 0, nil, invalidState(m, m.desired, dedalus.PhaseRunning)
	}
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		return 0, nil, fmt.Errorf("preview listener: %w", lerr)
	}
	m.previewSeq++
	p := &preview{
		id: newID("pv-"), seq: m.previewSeq, m: m, port: *b.Port, protocol: protocol,
		visibility: visibility, createdAt: time.Now(),
		ln:  &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}},
		url: "http://" + ln.Addr().String(),
	}
	scheme := "http"
	if protocol == dedalus.ProtocolHTTPS {
		scheme = "https"
	}
	target := &url.URL{Scheme: scheme, Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(m.appPort))}
	p.trans = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback to the machine's own app
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:     p.trans,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Debug("preview upstream error", "preview_id", p.id, "err", err)
			http.Error(w, fmt.Sprintf("machine app on port %d is not answering: %v", m.appPort, err), http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.servePreview(p, proxy, w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	srv, tl := p.srv, p.ln
	if !s.goroutine(func() { _ = srv.Serve(tl) }) {
		ln.Close()
		return 0, nil, errBody(http.StatusServiceUnavailable, dedalus.CodeDependencyUnavailable, "runtime unavailable", true, 0, nil)
	}
	m.previews[p.id] = p
	m.previewOrder = append(m.previewOrder, p)
	switch m.phase {
	case dedalus.PhaseRunning:
		p.readyAt = p.createdAt
	case dedalus.PhaseSleeping, dedalus.PhaseStopping:
		// The preview answers wake_in_progress: start that wake, as creating
		// an execution does. A machine still booting becomes ready by itself.
		s.beginWake(m, "preview requested")
	}
	s.log.Info("preview created", "machine_id", m.id, "preview_id", p.id, "url", p.url, "app_port", m.appPort)
	return http.StatusOK, p.response(), nil
}

func (s *Server) lookupPreview(c *call) (*machine, *preview, *apiError) {
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return nil, nil, err
	}
	id := c.param("preview_id")
	p := m.previews[id]
	if p == nil {
		return nil, nil, notFound("preview", id)
	}
	return m, p, nil
}

func (s *Server) getPreview(c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, p, err := s.lookupPreview(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, p.response(), nil
}

func (s *Server) listPreviews(c *call) (int, any, error) {
	limit, after, perr := pageParams(c.r)
	if perr != nil {
		return 0, nil, perr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return 0, nil, err
	}
	page, next := paginate(m.previewOrder, func(p *preview) int64 { return p.seq }, limit, after)
	items := make([]dedalus.Preview, len(page))
	for i, p := range page {
		items[i] = p.response()
	}
	return http.StatusOK, dedalus.Page[dedalus.Preview]{Items: items, NextCursor: next}, nil
}

func (s *Server) deletePreview(c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, p, err := s.lookupPreview(c)
	if err != nil {
		return 0, nil, err
	}
	p.shut()
	resp := p.response()
	delete(m.previews, p.id)
	for i, x := range m.previewOrder {
		if x == p {
			m.previewOrder = append(m.previewOrder[:i:i], m.previewOrder[i+1:]...)
			break
		}
	}
	s.log.Info("preview deleted", "machine_id", m.id, "preview_id", p.id)
	return http.StatusOK, resp, nil
}
