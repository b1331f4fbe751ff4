package config_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/drydock-dev/drydock/internal/config"
)

// --- API key, against a TLS gRPC frontend that records what it is sent ---

type recordingFrontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
	key string

	mu    sync.Mutex
	auths []string // authorization metadata of each GetSystemInfo call
	tls   []bool   // whether that call came over TLS
}

func (f *recordingFrontend) GetSystemInfo(ctx context.Context, _ *workflowservice.GetSystemInfoRequest) (*workflowservice.GetSystemInfoResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	auth := strings.Join(md.Get("authorization"), ",")
	p, _ := peer.FromContext(ctx)
	_, overTLS := p.AuthInfo.(credentials.TLSInfo)
	f.mu.Lock()
	f.auths = append(f.auths, auth)
	f.tls = append(f.tls, overTLS)
	f.mu.Unlock()
	if auth != "Bearer "+f.key {
		return nil, status.Error(codes.Unauthenticated, "invalid API key")
	}
	return &workflowservice.GetSystemInfoResponse{ServerVersion: "test", Capabilities: &workflowservice.GetSystemInfoResponse_Capabilities{}}, nil
}

func TestTemporalAPIKeyIsSentOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "cloud test CA")
	server := ca.issue(t, "frontend", true, time.Now().Add(time.Hour))
	front := &recordingFrontend{key: secretKey}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{server.tls}})))
	workflowservice.RegisterWorkflowServiceServer(gs, front)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	cfg := config.Temporal{
		Address:   ln.Addr().String(),
		Namespace: "ns.acct",
		TLSCAFile: writeFile(t, dir, "ca.pem", ca.pemBuf),
		APIKey:    secretKey,
	}
	tc, err := cfg.Dial(quietLogger())
	require.NoError(t, err)
	tc.Close()
	front.mu.Lock()
	assert.Equal(t, []string{"Bearer " + secretKey}, front.auths)
	assert.Equal(t, []bool{true}, front.tls)
	front.mu.Unlock()

	// A rejected key fails Dial without the key in the error.
	wrong := cfg
	wrong.APIKey = "tmprl-WRONG-key"
	_, err = wrong.Dial(quietLogger())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "tmprl-WRONG-key")
	assert.Contains(t, err.Error(), "API key")
	front.mu.Lock()
	assert.Equal(t, "Bearer tmprl-WRONG-key", front.auths[len(front.auths)-1])
	front.mu.Unlock()

	// The lazy client sends it too, on first use.
	lazy, err := cfg.DialLazy(quietLogger())
	require.NoError(t, err)
	defer lazy.Close()
	_, err = lazy.WorkflowService().GetSystemInfo(context.Background(), &workflowservice.GetSystemInfoRequest{})
	require.NoError(t, err)
	front.mu.Lock()
	assert.Equal(t, "Bearer "+secretKey, front.auths[len(front.auths)-1])
	front.mu.Unlock()
}
