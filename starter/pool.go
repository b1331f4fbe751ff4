package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// poolTemporal is what the pool commands use of the Temporal client.
type poolTemporal interface {
	QueryWorkflow(ctx context.Context, workflowID string, runID string, queryType string, args ...any) (converter.EncodedValue, error)
	SignalWorkflow(ctx context.Context, workflowID string, runID string, signalName string, arg any) error
	ExecuteWorkflow(ctx context.Context, options client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error)
}

// poolCommand is a parsed `starter pool` command.
type poolCommand struct {
	verb   string
	name   string
	resize runnerapi.ResizeRequest
	drain  runnerapi.DrainRequest
	pool   *pools.Pool // create: the configured pool
}

// parsePoolCommand reads `pool VERB NAME [flags]` and checks it without
// Temporal; create also finds the pool in the configuration.
func parsePoolCommand(cfg Config, verb string, args []string) (poolCommand, error) {
	c := poolCommand{verb: verb}
	if !slices.Contains([]string{"inventory", "resize", "drain", "create"}, verb) {
		return c, errors.New(usage)
	}
	if len(args) < 1 || strings.HasPrefix(args[0], "-") {
		return c, fmt.Errorf("pool %s: want a pool NAME", verb)
	}
	c.name, args = args[0], args[1:]
	var minIdle, maxMachines int
	var machine string
	fs := poolFlags(verb, &minIdle, &maxMachines, &machine)
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("pool %s: %w", verb, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("pool %s: unexpected arguments %q", verb, fs.Args())
	}
	var err error
	switch verb {
	case "resize":
		c.resize, err = resizeRequest(fs, minIdle, maxMachines)
	case "drain":
		c.drain.MachineID = machine
	case "create":
		c.pool, err = configuredPool(cfg, c.name)
	}
	return c, err
}

// poolFlags are the flags of `pool VERB`: resize's sizes, drain's machine.
func poolFlags(verb string, minIdle, maxMachines *int, machine *string) *flag.FlagSet {
	fs := flag.NewFlagSet("pool "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch verb {
	case "resize":
		fs.IntVar(minIdle, "min-idle", 0, "machines kept provisioned and idle")
		fs.IntVar(maxMachines, "max", 0, "most machines the pool may have")
	case "drain":
		fs.StringVar(machine, "machine", "", "drain only this machine (default: every machine)")
	}
	return fs
}

// resizeRequest is the resize the flags set on fs ask for, checked.
func resizeRequest(fs *flag.FlagSet, minIdle, maxMachines int) (runnerapi.ResizeRequest, error) {
	var r runnerapi.ResizeRequest
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "min-idle":
			r.MinIdle = &minIdle
		case "max":
			r.MaxMachines = &maxMachines
		}
	})
	switch {
	case r.MinIdle == nil && r.MaxMachines == nil:
		return r, errors.New("pool resize: give -min-idle N, -max N or both")
	case r.MinIdle != nil && minIdle < 0:
		return r, fmt.Errorf("pool resize: -min-idle %d is negative", minIdle)
	case r.MaxMachines != nil && maxMachines < 1:
		return r, fmt.Errorf("pool resize: -max %d: a pool needs at least one machine", maxMachines)
	case r.MinIdle != nil && r.MaxMachines != nil && minIdle > maxMachines:
		return r, fmt.Errorf("pool resize: -min-idle %d exceeds -max %d", minIdle, maxMachines)
	}
	return r, nil
}

// configuredPool finds pool create's NAME in the runner pools configuration.
func configuredPool(cfg Config, name string) (*pools.Pool, error) {
	pc, err := pools.LoadFrom(cfg.RunnerPoolsFile, cfg.RunnerPools)
	if err != nil {
		return nil, err
	}
	if p := pc.Get(name); p != nil {
		return p, nil
	}
	names := pc.Names()
	if len(names) == 0 {
		return nil, fmt.Errorf("pool create: no pool %q: no pools are configured (set RUNNER_POOLS_FILE or RUNNER_POOLS)", name)
	}
	return nil, fmt.Errorf("pool create: no pool %q in the configuration (pools: %s)", name, strings.Join(names, ", "))
}

// poolCmd drives a RunnerPool workflow through Temporal.
func poolCmd(ctx context.Context, cfg Config, verb string, args []string, out io.Writer) error {
	c, err := parsePoolCommand(cfg, verb, args)
	if err != nil {
		return err
	}
	tc, err := cfg.Temporal.Dial(quietLog())
	if err != nil {
		return err
	}
	defer tc.Close()
	return c.run(ctx, tc, out)
}

func (c poolCommand) run(ctx context.Context, tc poolTemporal, out io.Writer) error {
	id := runnerapi.PoolWorkflowID(c.name)
	switch c.verb {
	case "inventory":
		return inventory(ctx, tc, id, out)
	case "resize":
		return c.runResize(ctx, tc, id, out)
	case "drain":
		return c.runDrain(ctx, tc, id, out)
	case "create":
		return c.runCreate(ctx, tc, id, out)
	}
	return errors.New(usage)
}

// inventory queries the pool workflow id and prints its inventory.
func inventory(ctx context.Context, tc poolTemporal, id string, out io.Writer) error {
	v, err := tc.QueryWorkflow(ctx, id, "", runnerapi.QueryInventory)
	if err != nil {
		return fmt.Errorf("query %s: %w", id, err)
	}
	var inv runnerapi.Inventory
	if err := v.Get(&inv); err != nil {
		return fmt.Errorf("query %s: %w", id, err)
	}
	return printInventory(out, inv)
}

func (c poolCommand) runResize(ctx context.Context, tc poolTemporal, id string, out io.Writer) error {
	if err := tc.SignalWorkflow(ctx, id, "", runnerapi.SignalResize, c.resize); err != nil {
		return fmt.Errorf("signal %s: %w", id, err)
	}
	var parts []string
	if c.resize.MinIdle != nil {
		parts = append(parts, fmt.Sprintf("min_idle %d", *c.resize.MinIdle))
	}
	if c.resize.MaxMachines != nil {
		parts = append(parts, fmt.Sprintf("max_machines %d", *c.resize.MaxMachines))
	}
	fmt.Fprintf(out, "resize requested for %s: %s\n", id, strings.Join(parts, ", "))
	return nil
}

func (c poolCommand) runDrain(ctx context.Context, tc poolTemporal, id string, out io.Writer) error {
	if err := tc.SignalWorkflow(ctx, id, "", runnerapi.SignalDrain, c.drain); err != nil {
		return fmt.Errorf("signal %s: %w", id, err)
	}
	what := "every machine"
	if c.drain.MachineID != "" {
		what = "machine " + c.drain.MachineID
	}
	fmt.Fprintf(out, "drain requested for %s: %s (deleted once idle)\n", id, what)
	return nil
}

func (c poolCommand) runCreate(ctx context.Context, tc poolTemporal, id string, out io.Writer) error {
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(workflows.SearchAttrPool.ValueSet(c.name)),
		StaticSummary:            fmt.Sprintf("runner pool %s (labels %s)", c.name, strings.Join(c.pool.Labels, ", ")),
	}, runnerapi.RunnerPoolName, runnerapi.PoolInput{Pool: *c.pool})
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	fmt.Fprintf(out, "%s is running (run %s); a pool that was already running keeps its configuration: resize it, or terminate and create it again\n", id, run.GetRunID())
	return nil
}

// stateOrder lists machine states in lifecycle order, for stable output.
var stateOrder = []runnerapi.MachineState{
	runnerapi.MachineProvisioning, runnerapi.MachineIdle, runnerapi.MachineWaking,
	runnerapi.MachineBusy, runnerapi.MachineDraining, runnerapi.MachineBroken,
}

func printInventory(out io.Writer, inv runnerapi.Inventory) error {
	fmt.Fprintf(out, "pool %s: min_idle %d, max_machines %d, %d machine(s)\n", inv.Pool, inv.MinIdle, inv.MaxMachines, len(inv.Machines))
	if err := printMachines(out, inv.Machines); err != nil {
		return err
	}
	if counts := stateCounts(inv.Counts); len(counts) > 0 {
		fmt.Fprintf(out, "counts: %s\n", strings.Join(counts, ", "))
	}
	if !inv.AwakeAsOf.IsZero() {
		fmt.Fprintf(out, "awake: %s in all, deleted machines included (as of %s)\n",
			time.Duration(inv.AwakeSeconds*float64(time.Second)).Round(time.Second), inv.AwakeAsOf.UTC().Format(time.RFC3339))
	}
	if len(inv.Queue) == 0 {
		fmt.Fprintln(out, "queue: empty")
		return nil
	}
	ids := make([]string, len(inv.Queue))
	for i, j := range inv.Queue {
		ids[i] = fmt.Sprint(j)
	}
	fmt.Fprintf(out, "queue: %d job(s) waiting for a machine, oldest first: %s\n", len(inv.Queue), strings.Join(ids, ", "))
	return nil
}

// printMachines writes the inventory's table of machines.
func printMachines(out io.Writer, machines []runnerapi.PoolMachine) error {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tSTATE\tJOB\tRUNNER\tJOBS\tAWAKE\tSINCE")
	for _, m := range machines {
		job, runner, since := "-", "-", "-"
		if m.JobID != 0 {
			job = fmt.Sprint(m.JobID)
		}
		if m.RunnerName != "" {
			runner = m.RunnerName
		}
		if !m.Since.IsZero() {
			since = m.Since.UTC().Format(time.RFC3339)
		}
		awake := time.Duration(m.AwakeSeconds * float64(time.Second)).Round(time.Second).String()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.MachineID, m.State, job, runner, m.Jobs, awake, since)
	}
	return tw.Flush()
}

// stateCounts are the non-zero counts ("idle 2"), known states in
// lifecycle order, then those this tool does not know yet, sorted.
func stateCounts(byState map[runnerapi.MachineState]int) []string {
	var counts []string
	for _, s := range stateOrder {
		if n := byState[s]; n > 0 {
			counts = append(counts, fmt.Sprintf("%s %d", s, n))
		}
	}
	// States this tool does not know yet still show.
	var other []string
	for s, n := range byState {
		if !slices.Contains(stateOrder, s) && n > 0 {
			other = append(other, fmt.Sprintf("%s %d", s, n))
		}
	}
	slices.Sort(other)
	return append(counts, other...)
}

// jobDelivery is a parsed `starter webhook send-job`.
type jobDelivery struct {
	action   string
	job      ghfixture.Job
	url      string
	delivery string
}

func parseSendJob(cfg Config, args []string) (jobDelivery, error) {
	d := jobDelivery{}
	fs := flag.NewFlagSet("webhook send-job", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	labels := fs.String("labels", "", "comma-separated runs-on labels (required), e.g. self-hosted,linux")
	fs.Int64Var(&d.job.ID, "job-id", 0, "GitHub Actions job ID (required)")
	fs.Int64Var(&d.job.RunID, "run-id", 1, "workflow run ID")
	fs.StringVar(&d.action, "action", "queued", "queued, waiting, in_progress or completed")
	fs.StringVar(&d.job.Name, "name", "build", "job name")
	fs.StringVar(&d.job.Owner, "owner", "drydock-demo", "repository owner")
	fs.StringVar(&d.job.Repo, "repo", "previewapp", "repository name")
	fs.StringVar(&d.job.Org, "org", "", "organization login, if the repository belongs to one")
	fs.BoolVar(&d.job.Public, "public", false, "the repository is public (a pool refuses its jobs unless allow_public)")
	fs.StringVar(&d.job.RunnerName, "runner", "", "runner name (in_progress, completed)")
	fs.StringVar(&d.job.Conclusion, "conclusion", "success", "conclusion (completed)")
	fs.Int64Var(&d.job.InstallationID, "installation-id", 0, "GitHub App installation ID (0: none)")
	fs.StringVar(&d.url, "url", cfg.WebhookURL, "webhook endpoint")
	fs.StringVar(&d.delivery, "delivery", "", "X-GitHub-Delivery ID (default: random; reuse one to simulate a redelivery)")
	if err := fs.Parse(args); err != nil {
		return d, fmt.Errorf("webhook send-job: %w", err)
	}
	if fs.NArg() > 0 {
		return d, fmt.Errorf("webhook send-job: unexpected arguments %q", fs.Args())
	}
	for l := range strings.SplitSeq(*labels, ",") {
		if l = strings.TrimSpace(l); l != "" {
			d.job.Labels = append(d.job.Labels, l)
		}
	}
	switch {
	case len(d.job.Labels) == 0:
		return d, errors.New("webhook send-job: -labels is required (e.g. -labels self-hosted,linux)")
	case d.job.ID <= 0:
		return d, errors.New("webhook send-job: -job-id N is required (a positive job ID)")
	case d.job.RunID <= 0:
		return d, errors.New("webhook send-job: -run-id must be positive")
	case !slices.Contains(ghfixture.WorkflowJobActions, d.action):
		return d, fmt.Errorf("webhook send-job: -action %q: want queued, waiting, in_progress or completed", d.action)
	case d.job.Owner == "" || d.job.Repo == "":
		return d, errors.New("webhook send-job: -owner and -repo must not be empty")
	}
	if d.delivery == "" {
		d.delivery = randomID()
	}
	return d, nil
}

// sendJob posts a signed workflow_job delivery, as GitHub would.
func sendJob(ctx context.Context, cfg Config, args []string, out io.Writer) error {
	d, err := parseSendJob(cfg, args)
	if err != nil {
		return err
	}
	body, err := ghfixture.WorkflowJob(d.action, d.job)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-GitHub-Delivery", d.delivery)
	req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(cfg.WebhookSecret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(out, "%s workflow_job %s job %d (delivery %s)\n%s", resp.Status, d.action, d.job.ID, d.delivery, b)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
