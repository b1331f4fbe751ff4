package config

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

// Main is a binary's main function: with a help argument it prints spec's
// variables and exits; otherwise it calls run and, when run fails, prints
// the error after the binary's name and exits 1. run loads spec itself.
func Main(binary, summary string, spec any, run func() error) {
	HandleHelp(os.Args[1:], binary, summary, spec)
	ExitOnError(binary, run())
}

// ExitOnError prints a non-nil err after prefix ("prefix: err") on stderr
// and exits 1; a nil err does nothing.
func ExitOnError(prefix string, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, prefix+":", err)
		os.Exit(1)
	}
}

// CheckHostPort checks that the setting variable=addr is host:port.
func CheckHostPort(variable, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("configuration: %s=%q: want host:port: %w", variable, addr, err)
	}
	return nil
}

// CheckAddrs checks a server's listen address (required) and its admin
// address (empty: none), in that order; the variables name them in errors.
func CheckAddrs(variable, addr, adminVariable, adminAddr string) error {
	if err := CheckHostPort(variable, addr); err != nil {
		return err
	}
	if adminAddr == "" {
		return nil
	}
	return CheckHostPort(adminVariable, adminAddr)
}

// Listen opens a server's public listener on addr (variable names it in
// errors) and serves admin on adminAddr in the background (ServeAdmin).
// When the admin listener fails, the public one is closed again. stopAdmin
// shuts the admin server down; call it after the server has drained.
func Listen(variable, addr, adminVariable, adminAddr string, admin http.Handler) (ln net.Listener, boundAdmin string, stopAdmin func(), err error) {
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, "", nil, fmt.Errorf("listen on %s (%s): %w", addr, variable, err)
	}
	boundAdmin, stopAdmin, err = ServeAdmin(adminAddr, adminVariable, admin)
	if err != nil {
		ln.Close()
		return nil, "", nil, err
	}
	return ln, boundAdmin, stopAdmin, nil
}

// SignalContext is a context that ends on SIGTERM or Ctrl-C; onStop, when
// not nil, is called once it has ended (a server's readiness turning to
// stopping). stop releases the signals.
func SignalContext(onStop func()) (ctx context.Context, stop context.CancelFunc) {
	ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if onStop != nil {
		go func() { <-ctx.Done(); onStop() }()
	}
	return ctx, stop
}
