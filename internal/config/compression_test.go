package config_test

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// compressionTap records the compression of each request a gRPC server
// receives.
type compressionTap struct {
	mu   sync.Mutex
	seen []string
}

func (c *compressionTap) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *compressionTap) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *compressionTap) HandleConn(context.Context, stats.ConnStats) {}
func (c *compressionTap) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		c.mu.Lock()
		c.seen = append(c.seen, h.Compression)
		c.mu.Unlock()
	}
}

// TEMPORAL_GRPC_COMPRESSION=none sends Temporal uncompressed requests; the
// default is the SDK's gzip.
func TestTemporalGRPCCompression(t *testing.T) {
	tap := &compressionTap{}
	gs := grpc.NewServer(grpc.StatsHandler(tap))
	workflowservice.RegisterWorkflowServiceServer(gs, &workflowservice.UnimplementedWorkflowServiceServer{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	for _, tc := range []struct{ env, want string }{{"", "gzip"}, {"gzip", "gzip"}, {"none", ""}} {
		env := map[string]string{"TEMPORAL_ADDRESS": ln.Addr().String()}
		if tc.env != "" {
			env["TEMPORAL_GRPC_COMPRESSION"] = tc.env
		}
		cfg, err := loadTemporal(t, env)
		require.NoError(t, err)
		c, err := cfg.DialLazy(quietLogger())
		require.NoError(t, err)
		tap.mu.Lock()
		tap.seen = nil
		tap.mu.Unlock()
		// Unimplemented: the request still reaches the server, as it was sent.
		_, _ = c.WorkflowService().GetSystemInfo(context.Background(), &workflowservice.GetSystemInfoRequest{})
		c.Close()
		tap.mu.Lock()
		assert.Equal(t, []string{tc.want}, tap.seen, "TEMPORAL_GRPC_COMPRESSION=%q", tc.env)
		tap.mu.Unlock()
		if tc.env == "none" {
			assert.Contains(t, cfg.Describe(), "uncompressed")
		}
	}
}
