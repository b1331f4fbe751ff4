package config

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckAddrs(t *testing.T) {
	assert.NoError(t, CheckAddrs("X_ADDR", "127.0.0.1:80", "X_METRICS_ADDR", ""), "no admin address")
	assert.NoError(t, CheckAddrs("X_ADDR", "127.0.0.1:80", "X_METRICS_ADDR", ":9090"))
	assert.EqualError(t, CheckAddrs("X_ADDR", "nope", "X_METRICS_ADDR", ":9090"),
		`configuration: X_ADDR="nope": want host:port: address nope: missing port in address`)
	assert.EqualError(t, CheckAddrs("X_ADDR", "", "X_METRICS_ADDR", ":9090"),
		`configuration: X_ADDR="": want host:port: missing port in address`, "the listen address is required")
	assert.EqualError(t, CheckAddrs("X_ADDR", ":80", "X_METRICS_ADDR", "nope"),
		`configuration: X_METRICS_ADDR="nope": want host:port: address nope: missing port in address`)
}

// Listen opens the public listener and serves the admin handler; when the
// admin address cannot be listened on, the public listener is released.
func TestListen(t *testing.T) {
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	ln, adminAddr, stopAdmin, err := Listen("X_ADDR", "127.0.0.1:0", "X_METRICS_ADDR", "127.0.0.1:0", admin)
	require.NoError(t, err)
	defer ln.Close()
	resp, err := http.Get("http://" + adminAddr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusTeapot, resp.StatusCode)
	stopAdmin()
	_, err = net.DialTimeout("tcp", adminAddr, time.Second)
	assert.Error(t, err, "admin stopped")

	_, _, _, err = Listen("X_ADDR", ln.Addr().String(), "X_METRICS_ADDR", "127.0.0.1:0", admin)
	assert.ErrorContains(t, err, "listen on "+ln.Addr().String()+" (X_ADDR): ")

	busy := ln.Addr().String()
	ln2, _, _, err := Listen("X_ADDR", "127.0.0.1:0", "X_METRICS_ADDR", busy, admin)
	assert.Nil(t, ln2)
	assert.ErrorContains(t, err, `configuration: X_METRICS_ADDR="`+busy+`": listen: `)
}

func TestListenWithoutAdmin(t *testing.T) {
	ln, adminAddr, stopAdmin, err := Listen("X_ADDR", "127.0.0.1:0", "X_METRICS_ADDR", "", nil)
	require.NoError(t, err)
	defer ln.Close()
	assert.Empty(t, adminAddr)
	stopAdmin()
}

func TestSignalContextCallsOnStop(t *testing.T) {
	stopped := make(chan struct{})
	ctx, stop := SignalContext(func() { close(stopped) })
	stop()
	<-ctx.Done()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("onStop not called")
	}
	_, stop = SignalContext(nil)
	stop()
}
