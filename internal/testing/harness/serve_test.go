package harness

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A server that exits before it is ready (say, its port was taken between
// FreeAddr and its bind) is reported at once, with its log, so that Start
// can try again on new ports instead of waiting out the readiness timeout.
func TestWaitServingReportsAServerThatExited(t *testing.T) {
	h := &Harness{opts: Options{Dir: t.TempDir()}}
	defer h.Close()
	p := h.proc("router", nil)
	p.Path, p.Args = "/bin/sh", []string{"-c", "echo 'listen tcp 127.0.0.1:1: bind: address already in use'; exit 1"}
	require.NoError(t, p.Start())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := h.waitServing(ctx, p, "http://127.0.0.1:1/readyz")
	require.ErrorIs(t, err, errExitedEarly)
	assert.NoError(t, ctx.Err(), "reported before the readiness timeout")
	assert.Contains(t, err.Error(), "address already in use", "the server's log is in the error")
}
