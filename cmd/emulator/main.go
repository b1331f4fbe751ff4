// Command emulator runs the local Dedalus Machines API emulator on loopback:
// the same HTTP API as the real service, with machines that are directories
// and processes on this computer. See package emulator.
//
// Configuration comes from DEDALUS_EMULATOR_* environment variables; flags
// override them. Run with --help to list them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/emulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run serves until ctx is done (SIGINT/SIGTERM), then closes the emulator,
// which kills every machine's processes.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := emulator.LoadConfig()
	if err != nil {
		return fmt.Errorf("emulator: configuration: %w", err)
	}
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.BindFlags(fs)
	logLevel := envOr("DEDALUS_EMULATOR_LOG_LEVEL", "info")
	fs.StringVar(&logLevel, "log-level", logLevel, "debug, info, warn or error [env DEDALUS_EMULATOR_LOG_LEVEL, default info]")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "emulator: local Dedalus Machines API emulator (loopback only)\n\n")
		fmt.Fprintf(out, "Usage: emulator [flags]\n\nEvery flag overrides the environment variable named in its description:\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(out, "  --%s\n      %s\n", f.Name, f.Usage)
		})
		fmt.Fprintf(out, "\nControl endpoints (no auth): GET /_local/stats, POST /_local/stats/reset, GET|PUT /_local/faults\n")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("emulator: unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("emulator: --log-level %q: want debug, info, warn or error", logLevel)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	srv, err := emulator.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		_ = srv.Close(context.Background())
		return err
	}
	fmt.Fprintf(stdout, "Dedalus emulator listening\n  DEDALUS_BASE_URL=%s\n  DEDALUS_API_KEY=%s\n  stats: %s/_local/stats\n  data:  %s\n",
		srv.URL(), srv.APIKey(), srv.URL(), srv.DataDir())

	<-ctx.Done()
	cfg.Logger.Info("shutting down")
	cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return srv.Close(cctx)
}

func envOr(k, d string) string {
	if v, ok := os.LookupEnv(k); ok && v != "" {
		return v
	}
	return d
}
