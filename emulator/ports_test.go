package emulator

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Machine app ports come from below the ephemeral range, so neither an
// outgoing connection nor a preview listener (both take ephemeral ports)
// can take one before the app binds it; and no two machines share one.
func TestAppPortsAreOutsideTheEphemeralRangeAndUnique(t *testing.T) {
	lo, hi := appPortRange()
	require.Less(t, lo, hi)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ephemeral := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	assert.Greater(t, ephemeral, hi, "the kernel's ephemeral ports are above the app range")

	s := &Server{usedPorts: map[int]bool{}}
	// A port something else listens on is skipped.
	busy, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lo+int(nextAppPort.Load()+1)%(hi-lo+1)))
	if err == nil {
		defer busy.Close()
	}
	seen := map[int]bool{}
	for range 2000 {
		p, err := s.freePort()
		require.NoError(t, err)
		require.GreaterOrEqual(t, p, lo)
		require.LessOrEqual(t, p, hi)
		require.False(t, seen[p], "port %d handed out twice", p)
		if busy != nil {
			require.NotEqual(t, busy.Addr().(*net.TCPAddr).Port, p, "a port in use is skipped")
		}
		seen[p] = true
		s.usedPorts[p] = true
	}
}
