// Command starter is Drydock's operator tool: it starts, inspects and
// destroys previews by hand, starts, inspects, resizes and drains runner
// pools, manages Dedalus machines, and sends signed sample webhooks to a
// running Drydock (see usage).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/workflows"
)

// Config is the starter's configuration.
type Config struct {
	Temporal      config.Temporal `envconfig:"TEMPORAL"`
	Dedalus       dedalus.Config  `envconfig:"DEDALUS"`
	WebhookURL    string          `envconfig:"WEBHOOK_URL" default:"http://127.0.0.1:8080/webhooks/github" desc:"where 'webhook send' posts"`
	WebhookSecret string          `envconfig:"GITHUB_WEBHOOK_SECRET" default:"drydock-dev-webhook-secret" desc:"secret 'webhook send' signs with (make dev's default)"`
	// The pools 'pool create' starts (as the worker and webhook server read them).
	RunnerPoolsFile string `envconfig:"RUNNER_POOLS_FILE" desc:"runner pools file (YAML or JSON) for 'pool create'; excludes RUNNER_POOLS"`
	RunnerPools     string `envconfig:"RUNNER_POOLS" desc:"runner pools as inline JSON (or YAML) for 'pool create', instead of RUNNER_POOLS_FILE"`
	// What 'preflight' checks besides the above, read as the worker, the
	// webhook server and the router read them.
	GitHub           gh.Config `envconfig:"GITHUB"`
	AllowedOwners    []string  `envconfig:"DRYDOCK_ALLOWED_OWNERS" desc:"for 'preflight': the webhook server's owners, on which the App must be installed"`
	PreviewPublicURL string    `envconfig:"PREVIEW_PUBLIC_URL" default:"http://pr-{number}--{owner}--{repo}.preview.localhost:8090" desc:"for 'preflight': the worker's preview URL pattern, whose host must resolve"`
	PreviewDomain    string    `envconfig:"PREVIEW_DOMAIN" default:"preview.localhost" desc:"for 'preflight': the router's preview domain, whose hosts must resolve"`
}

const usage = `usage:
  starter preflight [-create-machine]
  starter preview status|redeploy OWNER/REPO NUMBER
  starter preview destroy OWNER/REPO NUMBER [-reason TEXT]
  starter preview start OWNER/REPO NUMBER -sha SHA -branch BRANCH -clone-url URL [-base main]
  starter demo open|push|close [-number N] [-repo-dir .dev/demo-repo]
  starter pool create|inventory NAME
  starter pool resize NAME [-min-idle N] [-max N]
  starter pool drain NAME [-machine MACHINE_ID]
  starter machines list
  starter machines get|wake|sleep|delete MACHINE_ID
  starter webhook send [-event ping] [-file payload.json] [-url URL] [-delivery ID]
  starter webhook send-job -labels self-hosted,linux -job-id N [-action queued|waiting|in_progress|completed]
          [-run-id N] [-name build] [-owner O] [-repo R] [-org ORG] [-runner NAME] [-conclusion success]
          [-installation-id N] [-url URL] [-delivery ID]`

func main() {
	var cfg Config
	config.HandleHelp(os.Args[1:], "starter", "operator tool for Drydock\n\n"+usage, &cfg)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "starter:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg Config, args []string, out io.Writer) error {
	if err := config.Load(&cfg); err != nil {
		return err
	}
	if len(args) >= 1 && args[0] == "preflight" {
		return preflightCmd(ctx, cfg, args[1:], out)
	}
	if len(args) < 2 {
		return errors.New(usage)
	}
	switch args[0] {
	case "preview":
		return previewCmd(ctx, cfg, args[1], args[2:], out)
	case "demo":
		return demoCmd(ctx, cfg, args[1], args[2:], out)
	case "pool":
		return poolCmd(ctx, cfg, args[1], args[2:], out)
	case "machines":
		c, err := dedalus.NewFromConfig(cfg.Dedalus)
		if err != nil {
			return err
		}
		return machines(ctx, c, args[1], args[2:], out)
	case "webhook":
		return webhookCmd(ctx, cfg, args[1], args[2:], out)
	}
	return errors.New(usage)
}

// webhookCmd sends a delivery to the webhook server: `webhook send` a
// payload, `webhook send-job` a workflow_job event.
func webhookCmd(ctx context.Context, cfg Config, verb string, args []string, out io.Writer) error {
	switch verb {
	case "send":
		return sendWebhook(ctx, cfg, args, out)
	case "send-job":
		return sendJob(ctx, cfg, args, out)
	}
	return errors.New(usage)
}

// manualKey is a one-off idempotency key: a manual command is not retried
// across process crashes, only within this run (where the client reuses it).
func manualKey(op, id string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "starter:" + op + ":" + id + ":" + hex.EncodeToString(b)
}

func machines(ctx context.Context, c *dedalus.Client, verb string, args []string, out io.Writer) error {
	if verb == "list" {
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MACHINE\tPHASE\tDESIRED\tVCPU\tMEMORY\tSTORAGE\tAUTOSLEEP\tCREATED")
		n := 0
		for m, err := range c.AllMachines(ctx, 100) {
			if err != nil {
				return err
			}
			n++
			fmt.Fprintf(tw, "%s\t%s\t%s\t%g\t%d MiB\t%d GiB\t%ds\t%s\n", m.MachineID, m.Status.Phase, m.DesiredState,
				m.VCPU, m.MemoryMiB, m.StorageGiB, m.AutosleepSeconds, m.CreatedAt.Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(out, "%d machine(s)\n", n)
		return nil
	}
	if len(args) != 1 {
		return errors.New(usage)
	}
	id := args[0]
	var (
		m   *dedalus.Machine
		err error
	)
	switch verb {
	case "get":
		m, err = c.GetMachine(ctx, id)
	case "wake":
		m, err = c.WakeAndWait(ctx, id, manualKey("wake", id))
	case "sleep":
		m, err = c.SleepAndWait(ctx, id, manualKey("sleep", id))
	case "delete":
		if _, err = c.DeleteMachine(ctx, id, dedalus.Mutation{IdempotencyKey: manualKey("delete", id)}); err == nil {
			m, err = c.WaitForPhase(ctx, id, dedalus.PhaseDestroyed)
		}
	default:
		return errors.New(usage)
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}

func sendWebhook(ctx context.Context, cfg Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("webhook send", flag.ContinueOnError)
	event := fs.String("event", "ping", "X-GitHub-Event of the delivery")
	file := fs.String("file", "", "JSON payload to send (default: a ping as GitHub sends when a webhook is created)")
	url := fs.String("url", cfg.WebhookURL, "webhook endpoint")
	delivery := fs.String("delivery", "", "X-GitHub-Delivery ID (default: random; reuse one to simulate a redelivery)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := ghfixture.Ping("drydock-demo", "previewapp", 1)
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		if !json.Valid(b) {
			return fmt.Errorf("%s is not valid JSON", *file)
		}
		body = b
	}
	if *delivery == "" {
		*delivery = randomID()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", *event)
	req.Header.Set("X-GitHub-Delivery", *delivery)
	req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(cfg.WebhookSecret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(out, "%s %s (delivery %s)\n%s", resp.Status, *event, *delivery, b)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func workflowsSA(owner, repo string, number int) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		workflows.SearchAttrRepo.ValueSet(owner+"/"+repo),
		workflows.SearchAttrPRNumber.ValueSet(int64(number)),
	)
}
