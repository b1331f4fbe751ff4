package emulator

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNoGoroutineLeak exercises every kind of background work (lifecycle
// timers, executions with leftover background processes holding their output
// pipes, previews with an upgraded connection left open, an SSE stream left
// open) and checks that Close leaves no goroutine behind. It is not parallel,
// so that the goroutine count is stable.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		cfg := testConfig()
		s, err := New(cfg)
		require.NoError(t, err)
		require.NoError(t, s.Start())
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		tr := &http.Transport{}
		e := &env{t: t, s: s, url: s.URL(), http: &http.Client{Timeout: 10 * time.Second, Transport: tr}}
		id := e.running(nil).MachineID
		startApp(t, e, id)
		// A command whose background child keeps stdout open.
		e.exec(id, map[string]any{"command": []string{"sh", "-c", "sleep 300 & echo bg"}})
		e.exec(id, map[string]any{"command": []string{"sleep", "300"}, "timeout_ms": 60000})
		p := previewOf(t, e, id)
		eventually(t, 5*time.Second, "app", func() bool {
			res, err := http.Get(p.URL + "/")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "http://"))
		require.NoError(t, err)
		defer conn.Close()
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusSwitchingProtocols, res.StatusCode)
		other := e.running(nil).MachineID
		require.Equal(t, http.StatusAccepted, e.do("DELETE", "/v1/machines/"+other, nil).status)
		// An SSE stream on a machine that will not converge before Close.
		require.NoError(t, s.SetFaults(Faults{BootDelay: D(time.Hour)}))
		m2 := e.create(nil)
		sreq := authReq(t, e, "GET", "/v1/machines/"+m2.MachineID+"/status/stream")
		sres, err := e.http.Do(sreq)
		require.NoError(t, err)
		defer sres.Body.Close()
		go io.Copy(io.Discard, sres.Body) //nolint:errcheck

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
		tr.CloseIdleConnections()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d before, %d after Close\n%s", before, runtime.NumGoroutine(), buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
