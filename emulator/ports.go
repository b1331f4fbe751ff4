package emulator

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// freePort picks a free loopback TCP port for a machine's app, not given
// to another machine. It is taken from below the kernel's ephemeral range:
// a port from that range (what listening on :0 gives) can be taken, between
// handing it out and the app's bind, by any outgoing connection or by the
// emulator's own preview listeners, and the app would fail to listen (or
// worse, another listener would answer its health check). Callers hold s.mu.
func (s *Server) freePort() (int, error) {
	lo, hi := appPortRange()
	span := hi - lo + 1
	start := int(nextAppPort.Add(1))
	for i := range span {
		port := lo + (start+i*7919)%span // 7919 is prime: every port is visited
		if s.usedPorts[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // something else holds it
		}
		ln.Close()
		return port, nil
	}
	return 0, fmt.Errorf("allocating machine port: no free port in %d-%d", lo, hi)
}

// nextAppPort is where the next app port search starts: shared by every
// emulator of the process, from a random offset so that emulators in
// different processes rarely search the same ports at the same time.
var nextAppPort = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(mrand.Int64N(1 << 20))
	return &n
}()

// appPortRange is the range machine app ports come from: the 20,000 ports
// below the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, read
// once).
var appPortRange = sync.OnceValues(func() (lo, hi int) {
	ephemeral := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 2048 {
				ephemeral = v
			}
		}
	}
	hi = ephemeral - 1
	lo = max(1024, hi-20000)
	return lo, hi
})
