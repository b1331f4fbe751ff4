package emulator

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
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
	for _, p := range m.previews.order {
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
