// Command worker runs Drydock's Temporal worker: it polls the drydock task
// queue and executes workflows and the activities that drive Dedalus machines.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.temporal.io/sdk/worker"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/workflows"
)

// Config is the worker's configuration.
type Config struct {
	Temporal config.Temporal `envconfig:"TEMPORAL"`
	Dedalus  dedalus.Config  `envconfig:"DEDALUS"`
	LogLevel string          `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
}

func main() {
	var cfg Config
	config.HandleHelp(os.Args[1:], "worker", "runs Drydock's workflows and activities", &cfg)
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(cfg Config) error {
	if err := config.Load(&cfg); err != nil {
		return err
	}
	log, err := config.Logger(cfg.LogLevel)
	if err != nil {
		return err
	}
	dc, err := dedalus.NewFromConfig(cfg.Dedalus)
	if err != nil {
		return err
	}
	tc, err := cfg.Temporal.Dial(log)
	if err != nil {
		return err
	}
	defer tc.Close()

	w := worker.New(tc, workflows.TaskQueue, worker.Options{})
	w.RegisterActivity(&activities.Machines{Client: dc})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("worker polling", "task_queue", workflows.TaskQueue, "temporal", cfg.Temporal.Address,
		"namespace", cfg.Temporal.Namespace, "dedalus", dc.BaseURL())
	interrupt := make(chan any)
	go func() { <-ctx.Done(); close(interrupt) }()
	if err := w.Run(interrupt); err != nil {
		return fmt.Errorf("worker stopped: %w", err)
	}
	log.Info("worker stopped")
	return nil
}
