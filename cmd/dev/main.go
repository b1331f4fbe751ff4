// Command dev runs Drydock locally for `make dev`: the Temporal dev server
// (state kept under .dev/, Drydock's search attributes registered, UI on
// :8233), the Dedalus emulator, the worker and the webhook server, on local
// defaults that need no configuration. Ctrl-C stops everything.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/devstack"
	"github.com/drydock-dev/drydock/workflows"
)

// Local defaults. They are development values, printed on start, never secrets.
const (
	devEmulatorKey = "dedalus-local-dev-key"
	// previewDomain resolves to loopback in browsers and curl (RFC 6761).
	previewDomain = "preview.localhost"
)

// Config is the dev stack's configuration; every value has a local default.
type Config struct {
	TemporalCLI string `envconfig:"TEMPORAL_CLI" required:"true" desc:"path of the Temporal CLI (make dev builds it)"`
	BinDir      string `envconfig:"DEV_BIN_DIR" default:"bin" desc:"where make dev put the emulator, worker and webhook binaries"`
	DataDir     string `envconfig:"DEV_DATA_DIR" default:".dev" desc:"Temporal database and emulator machines (git-ignored)"`
	// An existing Temporal (make cluster's) instead of the dev server.
	TemporalAddress string `envconfig:"TEMPORAL_ADDRESS" desc:"an existing Temporal frontend, e.g. make cluster's 127.0.0.1:7233 (namespace default, Drydock's search attributes registered); empty = start the dev server"`
	TemporalPort    int    `envconfig:"DEV_TEMPORAL_PORT" default:"7233" desc:"Temporal frontend port"`
	UIPort          int    `envconfig:"DEV_TEMPORAL_UI_PORT" default:"8233" desc:"Temporal UI port"`
	EmulatorAddr    string `envconfig:"DEV_EMULATOR_ADDR" default:"127.0.0.1:8788" desc:"Dedalus emulator listen address"`
	WebhookAddr     string `envconfig:"WEBHOOK_ADDR" default:"127.0.0.1:8080" desc:"webhook server listen address"`
	RouterAddr      string `envconfig:"ROUTER_ADDR" default:"127.0.0.1:8090" desc:"preview router listen address"`

	WorkerMetricsAddr  string `envconfig:"WORKER_METRICS_ADDR" default:"127.0.0.1:9090" desc:"worker /metrics, /healthz, /readyz"`
	WebhookMetricsAddr string `envconfig:"WEBHOOK_METRICS_ADDR" default:"127.0.0.1:9091" desc:"webhook server /metrics, /healthz, /readyz"`
	RouterMetricsAddr  string `envconfig:"ROUTER_METRICS_ADDR" default:"127.0.0.1:9092" desc:"preview router /metrics, /healthz, /readyz"`
	PreviewSpec        string `envconfig:"PREVIEW_DEFAULT_SPEC" default:"examples/previewapp/preview.yml" desc:"default preview spec (the demo app's)"`
	WebhookSecret      string `envconfig:"GITHUB_WEBHOOK_SECRET" default:"drydock-dev-webhook-secret" desc:"webhook secret (development default)"`
	AllowedOwners      string `envconfig:"DRYDOCK_ALLOWED_OWNERS" default:"drydock-demo" desc:"owners the webhook server acts for (the demo's owner; add yours, or * for everyone)"`
	// Local previews are public: make dev has no GitHub to log in with.
	PreviewVisibility string `envconfig:"PREVIEW_VISIBILITY" default:"public" desc:"who may open local previews (public, org or private); public locally, where there is no GitHub login"`
	// Point the stack at a real Dedalus by setting both; the emulator is then not started.
	DedalusBaseURL string `envconfig:"DEDALUS_BASE_URL" desc:"real Dedalus API URL; empty = start the local emulator"`
	DedalusAPIKey  string `envconfig:"DEDALUS_API_KEY" desc:"real Dedalus API key (with DEDALUS_BASE_URL)"`
}

func main() {
	var cfg Config
	config.HandleHelp(os.Args[1:], "dev", "runs Temporal, the Dedalus emulator, the worker and the webhook server locally", &cfg)
	config.ExitOnError("make dev", run(cfg))
}

func run(cfg Config) error {
	if err := config.Load(&cfg); err != nil {
		return err
	}
	if (cfg.DedalusBaseURL == "") != (cfg.DedalusAPIKey == "") {
		return errors.New("set both DEDALUS_BASE_URL and DEDALUS_API_KEY to use a real Dedalus, or neither to use the emulator")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("DEV_DATA_DIR %s: %w", cfg.DataDir, err)
	}
	ctx, stop := config.SignalContext(nil)
	defer stop()

	stack := devstack.New(os.Stdout)
	defer func() {
		fmt.Println("\nStopping the dev stack...")
		if err := stack.Stop(15 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		fmt.Println("Stopped.")
	}()

	temporalAddr, err := startTemporal(ctx, cfg, stack)
	if err != nil {
		return err
	}

	dedalusURL, dedalusKey, err := startEmulator(ctx, cfg, stack)
	if err != nil {
		return err
	}
	publicURL, err := startDrydock(ctx, cfg, stack, temporalAddr, dedalusURL, dedalusKey)
	if err != nil {
		return err
	}
	fmt.Print(banner(cfg, temporalAddr, dedalusURL, publicURL))
	return stack.Wait(ctx)
}

// startEmulator starts the Dedalus emulator unless a real Dedalus is
// configured, and returns the API's URL and key.
func startEmulator(ctx context.Context, cfg Config, stack *devstack.Stack) (url, key string, err error) {
	dedalusURL, dedalusKey := cfg.DedalusBaseURL, cfg.DedalusAPIKey
	if dedalusURL == "" {
		dedalusURL, dedalusKey = "http://"+cfg.EmulatorAddr, devEmulatorKey
		if err := stack.Start(ctx, devstack.Service{
			Name: "emulator", Path: filepath.Join(cfg.BinDir, "emulator"),
			Env: []string{
				"DEDALUS_EMULATOR_ADDR=" + cfg.EmulatorAddr,
				"DEDALUS_EMULATOR_API_KEY=" + devEmulatorKey,
				"DEDALUS_EMULATOR_DATA_DIR=" + filepath.Join(cfg.DataDir, "emulator"),
			},
			Ready: devstack.HTTPReady(dedalusURL + "/_local/stats"),
		}); err != nil {
			return "", "", err
		}
	}
	return dedalusURL, dedalusKey, nil
}

// startDrydock starts the worker, the webhook server and the router, each
// once it is ready, and returns the previews' URL template.
func startDrydock(ctx context.Context, cfg Config, stack *devstack.Stack, temporalAddr, dedalusURL, dedalusKey string) (string, error) {
	spec, err := filepath.Abs(cfg.PreviewSpec)
	if err != nil {
		return "", err
	}
	_, routerPort, err := net.SplitHostPort(cfg.RouterAddr)
	if err != nil {
		return "", fmt.Errorf("ROUTER_ADDR %q: %w", cfg.RouterAddr, err)
	}
	publicURL := "http://pr-{number}--{owner}--{repo}." + previewDomain + ":" + routerPort
	common := []string{"TEMPORAL_ADDRESS=" + temporalAddr, "TEMPORAL_NAMESPACE=default"}
	if err := stack.Start(ctx, devstack.Service{
		Name: "worker", Path: filepath.Join(cfg.BinDir, "worker"),
		Env: append(common, "DEDALUS_BASE_URL="+dedalusURL, "DEDALUS_API_KEY="+dedalusKey,
			"PREVIEW_DEFAULT_SPEC="+spec, "PREVIEW_PUBLIC_URL="+publicURL, "PREVIEW_VISIBILITY="+cfg.PreviewVisibility,
			fmt.Sprintf("TEMPORAL_UI_URL=http://localhost:%d", cfg.UIPort), "WORKER_METRICS_ADDR="+cfg.WorkerMetricsAddr),
		// Ready once it polls: its own /readyz, and Temporal sees the poller.
		Ready: func(ctx context.Context) error {
			if err := devstack.HTTPReady("http://" + cfg.WorkerMetricsAddr + "/readyz")(ctx); err != nil {
				return err
			}
			return workerPolling(ctx, temporalAddr)
		},
	}); err != nil {
		return "", err
	}
	if err := stack.Start(ctx, devstack.Service{
		Name: "webhook", Path: filepath.Join(cfg.BinDir, "webhook"),
		Env: append(common, "WEBHOOK_ADDR="+cfg.WebhookAddr, "GITHUB_WEBHOOK_SECRET="+cfg.WebhookSecret,
			"DRYDOCK_ALLOWED_OWNERS="+cfg.AllowedOwners, "PREVIEW_LOCAL_CLONE_URLS=true", "WEBHOOK_METRICS_ADDR="+cfg.WebhookMetricsAddr),
		Ready: devstack.HTTPReady("http://" + cfg.WebhookAddr + "/readyz"),
	}); err != nil {
		return "", err
	}
	if err := stack.Start(ctx, devstack.Service{
		Name: "router", Path: filepath.Join(cfg.BinDir, "router"),
		Env:   append(common, "ROUTER_ADDR="+cfg.RouterAddr, "PREVIEW_DOMAIN="+previewDomain, "ROUTER_METRICS_ADDR="+cfg.RouterMetricsAddr),
		Ready: devstack.HTTPReady("http://" + cfg.RouterAddr + "/readyz"),
	}); err != nil {
		return "", err
	}

	return publicURL, nil
}

// banner is what make dev prints once everything runs.
func banner(cfg Config, temporalAddr, dedalusURL, publicURL string) string {
	rows := [][2]string{
		{"Temporal UI", fmt.Sprintf("http://localhost:%d", cfg.UIPort)},
		{"Temporal frontend", temporalAddr + " (namespace default, task queue " + workflows.TaskQueue + ")"},
		{"Dedalus API", dedalusURL},
		{"Webhook endpoint", "http://" + cfg.WebhookAddr + "/webhooks/github"},
		{"Webhook secret", cfg.WebhookSecret},
		{"Allowed owners", cfg.AllowedOwners + " (DRYDOCK_ALLOWED_OWNERS: events of other owners are acknowledged, not acted on)"},
		{"Preview router", strings.NewReplacer("{number}", "N", "{owner}", "OWNER", "{repo}", "REPO").Replace(publicURL)},
		{"Preview access", visibilityNote(cfg.PreviewVisibility, os.Getenv("ROUTER_GITHUB_CLIENT_ID") != "")},
		{"Metrics", fmt.Sprintf("http://%s/metrics (worker), http://%s/metrics (webhook), http://%s/metrics (router)",
			cfg.WorkerMetricsAddr, cfg.WebhookMetricsAddr, cfg.RouterMetricsAddr)},
		{"Try a PR", "bin/starter demo open   (then: demo push, demo close)"},
		{"Data", cfg.DataDir + "/ (delete it to start afresh)"},
	}
	if cfg.TemporalAddress != "" {
		rows[0][1] = "the one make cluster printed (http://localhost:8233 by default)"
	}
	if cfg.DedalusBaseURL == "" {
		rows = append(rows[:3], append([][2]string{
			{"Dedalus API key", devEmulatorKey + " (emulator; stats at " + dedalusURL + "/_local/stats)"},
		}, rows[3:]...)...)
	}
	var b strings.Builder
	b.WriteString("\nDrydock is running locally:\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-18s %s\n", r[0], r[1])
	}
	b.WriteString("Press Ctrl-C to stop everything.\n")
	return b.String()
}

// startTemporal starts the dev server, or waits for the Temporal at
// TEMPORAL_ADDRESS (make cluster's) to answer, and returns its address.
func startTemporal(ctx context.Context, cfg Config, stack *devstack.Stack) (string, error) {
	if cfg.TemporalAddress != "" {
		fmt.Println("Using the Temporal at " + cfg.TemporalAddress + " (TEMPORAL_ADDRESS)...")
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := temporalReady(wctx, cfg.TemporalAddress); err != nil {
			return "", fmt.Errorf("TEMPORAL_ADDRESS %s does not answer (is make cluster running?): %w", cfg.TemporalAddress, err)
		}
		return cfg.TemporalAddress, nil
	}
	temporalAddr := fmt.Sprintf("127.0.0.1:%d", cfg.TemporalPort)
	args := []string{"server", "start-dev", "--ip", "127.0.0.1",
		"--port", fmt.Sprint(cfg.TemporalPort), "--ui-port", fmt.Sprint(cfg.UIPort),
		"--db-filename", filepath.Join(cfg.DataDir, "temporal.db"), "--log-level", "error"}
	args = append(args, workflows.SearchAttributeFlags()...)
	args = append(args, workflows.DevServerFlags()...)
	fmt.Println("Starting the Temporal dev server...")
	return temporalAddr, stack.Start(ctx, devstack.Service{
		Name: "temporal", Path: cfg.TemporalCLI, Args: args,
		Ready: func(ctx context.Context) error { return temporalReady(ctx, temporalAddr) },
	})
}

// visibilityNote says who may open local previews, for the startup table.
// The router inherits this process's environment, so login is on when
// ROUTER_GITHUB_CLIENT_ID is set here.
func visibilityNote(v string, login bool) string {
	switch {
	case v == "public":
		return "public: anyone who can reach the router, no login (local mode; PREVIEW_VISIBILITY=org|private to require one)"
	case login:
		return v + ": the router asks for a GitHub login (PREVIEW_VISIBILITY, ROUTER_GITHUB_CLIENT_ID)"
	default:
		return v + ": refused with 403, the router has no GitHub login (set ROUTER_GITHUB_CLIENT_ID, ROUTER_GITHUB_CLIENT_SECRET and ROUTER_SESSION_KEY, or PREVIEW_VISIBILITY=public)"
	}
}

func temporalReady(ctx context.Context, addr string) error {
	c, err := client.Dial(client.Options{HostPort: addr, Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err
}

func workerPolling(ctx context.Context, addr string) error {
	c, err := client.Dial(client.Options{HostPort: addr, Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.DescribeTaskQueue(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
	if err != nil {
		return err
	}
	if len(resp.GetPollers()) == 0 {
		return errors.New("no poller on the task queue yet")
	}
	return nil
}

// quietLogger drops the SDK's connection retries while we poll for readiness.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
