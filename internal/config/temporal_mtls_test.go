package config_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/testing/testenv"
)

// --- mTLS end to end, through a TLS-terminating proxy in front of a real dev server ---

// mtlsProxy terminates TLS, requiring a client certificate from its CA, and
// pipes the plaintext bytes to a Temporal frontend (gRPC's HTTP/2 stream is
// the same either way).
type mtlsProxy struct {
	ln       net.Listener
	upstream string

	mu       sync.Mutex
	clients  []string // the client certificate's CN, per accepted handshake
	rejected int
	conns    map[net.Conn]struct{}
}

func startMTLSProxy(t *testing.T, ca *testCA, server tls.Certificate, upstream string) *mtlsProxy {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		NextProtos:   []string{"h2"},
		MinVersion:   tls.VersionTLS12,
	})
	require.NoError(t, err)
	p := &mtlsProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.dropAll() })
	return p
}

func (p *mtlsProxy) Addr() string { return p.ln.Addr().String() }

func (p *mtlsProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c.(*tls.Conn))
	}
}

func (p *mtlsProxy) handle(c *tls.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		p.mu.Lock()
		p.rejected++
		p.mu.Unlock()
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.clients = append(p.clients, c.ConnectionState().PeerCertificates[0].Subject.CommonName)
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// dropAll closes every proxied connection, as a load balancer or a network
// blip would, so clients must reconnect with a fresh handshake.
func (p *mtlsProxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *mtlsProxy) seen() (clients []string, rejected int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.clients...), p.rejected
}

func TestTemporalMTLSAgainstDevServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := testenv.StartTemporal(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })

	dir := t.TempDir()
	ca := newCA(t, "drydock test CA")
	proxy := startMTLSProxy(t, ca, ca.issue(t, "frontend", true, time.Now().Add(time.Hour)).tls, srv.FrontendHostPort())
	caFile := writeFile(t, dir, "ca.pem", ca.pemBuf)
	first := ca.issue(t, "client-1", false, time.Now().Add(time.Hour))
	certFile := writeFile(t, dir, "tls.crt", first.certPEM)
	keyFile := writeFile(t, dir, "tls.key", first.keyPEM)

	cfg := config.Temporal{Address: proxy.Addr(), Namespace: "default",
		TLSCertFile: certFile, TLSKeyFile: keyFile, TLSCAFile: caFile, TLSServerName: "temporal.test"}
	tc, err := cfg.Dial(quietLogger())
	require.NoError(t, err)
	defer tc.Close()

	run := checkConnectionIsReal(ctx, t, tc)
	clients, _ := proxy.seen()
	assert.Equal(t, []string{"client-1"}, clients, "one connection, with the configured certificate")

	// The IP SAN also matches, so no server name is needed; a wrong one fails.
	noSNI := cfg
	noSNI.TLSServerName = ""
	c2, err := noSNI.Dial(quietLogger())
	require.NoError(t, err)
	c2.Close()

	t.Run("refused", func(t *testing.T) { checkRefused(t, cfg, proxy, dir) })
	clients, rejected := proxy.seen()
	assert.Equal(t, []string{"client-1", "client-1"}, clients, "no refused client got through")
	assert.GreaterOrEqual(t, rejected, 2)

	// Rotation: new files on disk; the same client's next connection presents them.
	second := ca.issue(t, "client-2", false, time.Now().Add(time.Hour))
	replaceFile(t, keyFile, second.keyPEM)
	replaceFile(t, certFile, second.certPEM)
	clients = reconnect(ctx, t, tc, proxy, "client reconnects after rotation")
	assert.Equal(t, "client-2", clients[len(clients)-1], "the reconnection uses the rotated certificate: %v", clients)
	_, err = tc.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	require.NoError(t, err)

	// A half-done rotation (new cert, key not yet written) keeps the last good pair.
	third := ca.issue(t, "client-3", false, time.Now().Add(time.Hour))
	replaceFile(t, certFile, third.certPEM)
	clients = reconnect(ctx, t, tc, proxy, "client reconnects during a half-done rotation")
	assert.Equal(t, "client-2", clients[len(clients)-1], "%v", clients)
	replaceFile(t, keyFile, third.keyPEM)
	clients = reconnect(ctx, t, tc, proxy, "client reconnects after the rotation completes")
	assert.Equal(t, "client-3", clients[len(clients)-1], "%v", clients)
}

// reconnect drops the proxy's connections, waits for tc to be served again
// (msg says what is awaited) and returns the clients the proxy has seen.
func reconnect(ctx context.Context, t *testing.T, tc client.Client, proxy *mtlsProxy, msg string) []string {
	t.Helper()
	proxy.dropAll()
	require.Eventually(t, func() bool {
		_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, msg)
	clients, _ := proxy.seen()
	return clients
}

// checkConnectionIsReal checks health and the namespaces through tc, and
// starts and describes a workflow, which it returns (terminated).
func checkConnectionIsReal(ctx context.Context, t *testing.T, tc client.Client) client.WorkflowRun {
	t.Helper()
	_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
	require.NoError(t, err)
	ns, err := tc.WorkflowService().ListNamespaces(ctx, &workflowservice.ListNamespacesRequest{})
	require.NoError(t, err)
	var names []string
	for _, n := range ns.Namespaces {
		names = append(names, n.NamespaceInfo.Name)
	}
	assert.Contains(t, names, "default")
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "mtls-check", TaskQueue: "mtls-check"}, "NoSuchWorkflow")
	require.NoError(t, err)
	desc, err := tc.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	require.NoError(t, err)
	assert.Equal(t, "NoSuchWorkflow", desc.WorkflowExecutionInfo.Type.Name)
	require.NoError(t, tc.TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), "test done"))
	return run
}

// checkRefused dials the proxy in front of the server with cfg's files
// (in dir) gone wrong in every way: no connection is made.
func checkRefused(t *testing.T, cfg config.Temporal, proxy *mtlsProxy, dir string) {
	caFile, certFile, keyFile := cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile
	other := newCA(t, "someone else's CA")
	stranger := other.issue(t, "stranger", false, time.Now().Add(time.Hour))
	wrongName := cfg
	wrongName.TLSServerName = "not-temporal.test"
	for name, c := range map[string]config.Temporal{
		"no client certificate":              {Address: proxy.Addr(), Namespace: "default", TLSCAFile: caFile},
		"certificate from another CA":        {Address: proxy.Addr(), Namespace: "default", TLSCAFile: caFile, TLSCertFile: writeFile(t, dir, "stranger.crt", stranger.certPEM), TLSKeyFile: writeFile(t, dir, "stranger.key", stranger.keyPEM)},
		"server not in the CA file":          {Address: proxy.Addr(), Namespace: "default", TLSCAFile: writeFile(t, dir, "other-ca.pem", other.pemBuf), TLSCertFile: certFile, TLSKeyFile: keyFile},
		"server name not in the server cert": wrongName,
		"plaintext to a TLS port":            {Address: proxy.Addr(), Namespace: "default"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			c, err := c.Dial(quietLogger())
			if err == nil {
				c.Close()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "connect to Temporal at "+proxy.Addr())
			t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}
