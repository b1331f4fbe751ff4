// Command webhook serves Drydock's GitHub webhook endpoint
// (POST /webhooks/github) with liveness (/healthz) and readiness (/readyz,
// which checks Temporal) probes.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/intake"
)

// Config is the webhook server's configuration.
type Config struct {
	Temporal    config.Temporal `envconfig:"TEMPORAL"`
	Addr        string          `envconfig:"WEBHOOK_ADDR" default:"127.0.0.1:8080" desc:"listen address of the webhook server"`
	Secret      string          `envconfig:"GITHUB_WEBHOOK_SECRET" desc:"the webhook secret configured on GitHub (required unless DRYDOCK_INSECURE_DEV)"`
	InsecureDev bool            `envconfig:"DRYDOCK_INSECURE_DEV" default:"false" desc:"accept unsigned deliveries when no secret is set (local development only)"`
	LogLevel    string          `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
}

func main() {
	var cfg Config
	config.HandleHelp(os.Args[1:], "webhook", "serves the GitHub webhook endpoint", &cfg)
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "webhook:", err)
		os.Exit(1)
	}
}

type temporalHealth struct{ c client.Client }

func (h temporalHealth) Ready(ctx context.Context) error {
	_, err := h.c.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err
}

func run(cfg Config) error {
	if err := config.Load(&cfg); err != nil {
		return err
	}
	log, err := config.Logger(cfg.LogLevel)
	if err != nil {
		return err
	}
	tc, err := cfg.Temporal.DialLazy(log)
	if err != nil {
		return err
	}
	defer tc.Close()
	h, err := intake.New(intake.Options{
		Secret: cfg.Secret, Insecure: cfg.InsecureDev, Health: temporalHealth{tc}, Logger: log,
	})
	if err != nil {
		return err
	}
	if cfg.Secret == "" {
		log.Warn("DRYDOCK_INSECURE_DEV: accepting unsigned webhook deliveries; never do this on a reachable address")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (WEBHOOK_ADDR): %w", cfg.Addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("webhook server listening", "url", "http://"+ln.Addr().String()+"/webhooks/github", "temporal", cfg.Temporal.Address)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("webhook server stopped")
	return nil
}
