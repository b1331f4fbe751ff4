package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
)

// ErrGraceExpired is Serve's answer when requests were still in flight at
// the end of the grace period (their connections are then closed).
var ErrGraceExpired = errors.New("requests still in flight at the end of the shutdown grace period")

// Serve runs srv on ln until ctx ends (SIGTERM, Ctrl-C). It then keeps
// serving for drain (while load balancers, told by a failing /readyz, stop
// sending new connections), stops accepting, and gives requests in flight
// up to grace to finish; connections still busy after that are closed and
// ErrGraceExpired is returned. A failure to serve is returned as it is.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, drain, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	if drain > 0 {
		select {
		case err := <-errc:
			return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
		case <-time.After(drain):
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = srv.Close()
		return ErrGraceExpired
	}
	return nil
}

// TemporalReady is a readiness check: nil while the Temporal frontend answers.
func TemporalReady(c client.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}
}

// ServeAdmin serves h (metrics, liveness, readiness) on addr in the
// background; variable names the setting, for errors. An empty addr serves
// nothing. stop shuts the listener down; call it after the binary's own
// work has drained, so metrics can be scraped until the end.
func ServeAdmin(addr, variable string, h http.Handler) (bound string, stop func(), err error) {
	if addr == "" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("configuration: %s=%q: listen: %w", variable, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Serve(ctx, srv, ln, 0, 2*time.Second)
	}()
	return ln.Addr().String(), func() { cancel(); <-done }, nil
}
