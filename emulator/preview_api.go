package emulator

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
)

type createPreviewBody struct {
	Port       *int64  `json:"port"`
	Protocol   *string `json:"protocol"`
	Visibility *string `json:"visibility"`
}

// check validates a create request; it returns the protocol and the
// visibility, defaults applied.
func (b *createPreviewBody) check() (protocol, visibility string, _ *apiError) {
	if b.Port == nil {
		return "", "", validation("body.port", "required property is missing", nil)
	}
	if *b.Port < 1 || *b.Port > 65535 {
		return "", "", validation("body.port", "must be between 1 and 65535", *b.Port)
	}
	protocol = dedalus.ProtocolHTTP
	if b.Protocol != nil {
		protocol = *b.Protocol
		if protocol != dedalus.ProtocolHTTP && protocol != dedalus.ProtocolHTTPS {
			return "", "", validation("body.protocol", "must be one of http, https", protocol)
		}
	}
	visibility = dedalus.VisibilityPublic
	if b.Visibility != nil {
		visibility = *b.Visibility
		switch visibility {
		case dedalus.VisibilityPublic, dedalus.VisibilityPrivate, dedalus.VisibilityOrg:
		default:
			return "", "", validation("body.visibility", "must be one of public, private, org", visibility)
		}
	}
	return protocol, visibility, nil
}

func (s *Server) createPreview(c *call) (int, any, error) {
	var b createPreviewBody
	if err := decodeBody(c.body, &b); err != nil {
		return 0, nil, err
	}
	protocol, visibility, aerr := b.check()
	if aerr != nil {
		return 0, nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, aerr := s.lookup(c.param("machine_id"))
	if aerr != nil {
		return 0, nil, aerr
	}
	switch m.phase {
	case dedalus.PhaseDestroying, dedalus.PhaseDestroyed, dedalus.PhaseFailed:
		return 0, nil, invalidState(m, m.desired, dedalus.PhaseRunning)
	}
	p, err := s.openPreview(m, *b.Port, protocol, visibility)
	if err != nil {
		return 0, nil, err
	}
	m.previews.add(p)
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

// openPreview starts a new preview of m: a loopback listener serving a
// reverse proxy to the machine's app port. Call with s.mu held.
func (s *Server) openPreview(m *machine, port int64, protocol, visibility string) (*preview, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("preview listener: %w", err)
	}
	p := &preview{
		id: newID("pv-"), seq: m.previews.next(), m: m, port: port, protocol: protocol,
		visibility: visibility, createdAt: time.Now(),
		ln:  &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}},
		url: "http://" + ln.Addr().String(),
	}
	p.trans = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback to the machine's own app
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     30 * time.Second,
	}
	proxy := s.previewProxy(p)
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.servePreview(p, proxy, w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	srv, tl := p.srv, p.ln
	if !s.goroutine(func() { _ = srv.Serve(tl) }) {
		ln.Close()
		return nil, errBody(http.StatusServiceUnavailable, dedalus.CodeDependencyUnavailable, "runtime unavailable", true, 0, nil)
	}
	return p, nil
}

// previewProxy forwards to the app port of p's machine, in p's protocol,
// keeping the request's Host.
func (s *Server) previewProxy(p *preview) *httputil.ReverseProxy {
	m := p.m
	scheme := "http"
	if p.protocol == dedalus.ProtocolHTTPS {
		scheme = "https"
	}
	target := &url.URL{Scheme: scheme, Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(m.appPort))}
	return &httputil.ReverseProxy{
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
}

// lookupPreview finds the request's machine and preview. Callers hold s.mu.
func (s *Server) lookupPreview(c *call) (*machine, *preview, *apiError) {
	m, err := s.lookup(c.param("machine_id"))
	if err != nil {
		return nil, nil, err
	}
	p, err := m.previews.get(c.param("preview_id"))
	return m, p, err
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
	return listChildren(s, c, func(m *machine) *children[*preview] { return &m.previews }, (*preview).response)
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
	m.previews.remove(p)
	s.log.Info("preview deleted", "machine_id", m.id, "preview_id", p.id)
	return http.StatusOK, resp, nil
}
