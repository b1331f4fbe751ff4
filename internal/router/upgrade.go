package router

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// idleConn is the preview's side of an upgraded connection (a WebSocket)
// as ReverseProxy copies it: every byte either way passes through its Read
// (preview to client) or Write (client to preview). When no byte has
// passed for idle, it closes the preview's connection; ReverseProxy then
// closes the client's, so an idle upgraded connection holds no goroutines,
// sockets or file descriptors beyond the limit.
type idleConn struct {
	io.ReadWriteCloser
	idle  int64 // nanoseconds
	last  atomic.Int64
	timer *time.Timer
	once  sync.Once
}

func newIdleConn(rwc io.ReadWriteCloser, idle time.Duration) *idleConn {
	c := &idleConn{ReadWriteCloser: rwc, idle: int64(idle)}
	c.last.Store(nanotime())
	c.timer = time.AfterFunc(idle, c.check)
	return c
}

// nanotime is a monotonic clock reading in nanoseconds.
var monoEpoch = time.Now()

func nanotime() int64 { return int64(time.Since(monoEpoch)) }

// check closes the connection when it has been idle long enough and
// otherwise looks again when it would be.
func (c *idleConn) check() {
	quiet := nanotime() - c.last.Load()
	if quiet >= c.idle {
		_ = c.Close()
		return
	}
	c.timer.Reset(time.Duration(c.idle - quiet))
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	if n > 0 {
		c.last.Store(nanotime())
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Write(p)
	if n > 0 {
		c.last.Store(nanotime())
	}
	return n, err
}

func (c *idleConn) Close() error {
	var err error
	c.once.Do(func() {
		c.timer.Stop()
		err = c.ReadWriteCloser.Close()
	})
	return err
}
