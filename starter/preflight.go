package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows"
)

// devWebhookSecret is make dev's webhook secret (the starter's default):
// known to everyone, so never a deployment's.
const devWebhookSecret = "drydock-dev-webhook-secret"

// preflight checks the configuration a deployment will run with against
// the real services, one line per check; Run's error says how many failed.
type preflight struct {
	cfg Config
	out io.Writer
	// createMachine: also create and delete a Dedalus machine (it costs).
	createMachine bool
	// lookup resolves a host name (net.DefaultResolver.LookupHost; tests
	// replace it).
	lookup  func(ctx context.Context, host string) ([]string, error)
	timeout time.Duration // per check
	failed  int
	pools   *pools.Config
}

// outcome is a check's result: ok, or a failure with the fix. A note is
// neither: something preflight cannot check, and why.
type outcome struct {
	status string // "ok", "FAIL", "note"
	detail string
	fix    string
}

func pass(format string, args ...any) outcome {
	return outcome{status: "ok", detail: fmt.Sprintf(format, args...)}
}
func note(format string, args ...any) outcome {
	return outcome{status: "note", detail: fmt.Sprintf(format, args...)}
}

func fail(fix, format string, args ...any) outcome {
	return outcome{status: "FAIL", detail: fmt.Sprintf(format, args...), fix: fix}
}

// report prints one check's line.
func (p *preflight) report(name string, o outcome) {
	// One line per check: a multi-line error (the pools' list of
	// problems) is joined.
	detail := strings.NewReplacer("\n- ", "; ", "\n", " ").Replace(o.detail)
	line := fmt.Sprintf("%-4s  %s: %s", o.status, name, detail)
	if o.fix != "" {
		line += " (fix: " + o.fix + ")"
	}
	fmt.Fprintln(p.out, line)
	if o.status == "FAIL" {
		p.failed++
	}
}

func preflightCmd(ctx context.Context, cfg Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	create := fs.Bool("create-machine", false, "also create and delete a small Dedalus machine (it costs a few seconds of a machine)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p := &preflight{cfg: cfg, out: out, createMachine: *create, lookup: net.DefaultResolver.LookupHost, timeout: 15 * time.Second}
	return p.run(ctx)
}

// run performs every check, then fails when any did.
func (p *preflight) run(ctx context.Context) error {
	p.checkConfig()
	p.checkTemporal(ctx)
	p.checkWebhook()
	p.checkGitHub(ctx)
	p.checkDedalus(ctx)
	p.checkDomains(ctx)
	if p.failed > 0 {
		return fmt.Errorf("preflight: %d check(s) failed", p.failed)
	}
	fmt.Fprintln(p.out, "preflight: every check passed")
	return nil
}

// checkConfig loads the runner pools as the worker and webhook server do.
func (p *preflight) checkConfig() {
	pc, err := pools.LoadFrom(p.cfg.RunnerPoolsFile, p.cfg.RunnerPools)
	if err != nil {
		p.report("runner pools", fail("correct RUNNER_POOLS_FILE or RUNNER_POOLS", "%v", err))
		p.pools = &pools.Config{}
		return
	}
	p.pools = pc
	if len(pc.Pools) == 0 {
		p.report("runner pools", note("none configured (RUNNER_POOLS_FILE, RUNNER_POOLS): runner checks skipped"))
		return
	}
	p.report("runner pools", pass("%d configured: %s", len(pc.Pools), strings.Join(pc.Names(), ", ")))
}

// checkTemporal: the frontend answers, the namespace exists, and Drydock's
// search attributes are registered in it with the right types.
func (p *preflight) checkTemporal(ctx context.Context) {
	t := p.cfg.Temporal
	tc, err := t.DialLazy(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		p.report("temporal reachable", fail("correct the TEMPORAL_* settings", "%v", err))
		return
	}
	defer tc.Close()
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, err := tc.CheckHealth(cctx, &client.CheckHealthRequest{}); err != nil {
		p.report("temporal reachable", fail("check TEMPORAL_ADDRESS, TLS (TEMPORAL_TLS_*) or TEMPORAL_API_KEY, and that the frontend runs",
			"%s: %v", t.Describe(), err))
		return
	}
	p.report("temporal reachable", pass("%s", t.Describe()))
	ns := t.Namespace
	if _, err := tc.WorkflowService().DescribeNamespace(cctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns}); err != nil {
		p.report("temporal namespace", fail("create it (temporal operator namespace create --namespace "+ns+") or correct TEMPORAL_NAMESPACE",
			"%s: %v", ns, err))
		return
	}
	p.report("temporal namespace", pass("%s exists", ns))
	resp, err := tc.OperatorService().ListSearchAttributes(cctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		p.report("temporal search attributes", fail("check the credential may list search attributes", "%v", err))
		return
	}
	p.report("temporal search attributes", searchAttributeOutcome(ns, resp.GetCustomAttributes()))
}

// searchAttributeOutcome compares the namespace's custom search attributes
// with Drydock's (workflows.SearchAttributes).
func searchAttributeOutcome(ns string, have map[string]enumspb.IndexedValueType) outcome {
	var missing, wrong, names []string
	for key := range workflows.SearchAttributes().GetUntypedValues() {
		want := key.GetValueType()
		names = append(names, key.GetName())
		got, ok := have[key.GetName()]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("--name %s --type %s", key.GetName(), typeName(want)))
		case got != want:
			wrong = append(wrong, fmt.Sprintf("%s is %s, want %s", key.GetName(), typeName(got), typeName(want)))
		}
	}
	switch {
	case len(wrong) > 0:
		return fail("a search attribute's type cannot change: use a namespace where they are registered with the right types",
			"%s: %s", ns, strings.Join(wrong, "; "))
	case len(missing) > 0:
		return fail("temporal operator search-attribute create --namespace "+ns+" "+strings.Join(missing, " ")+
			" (Temporal Cloud: tcld namespace search-attributes add)", "%s lacks %d of Drydock's search attributes", ns, len(missing))
	}
	return pass("%s has %s", ns, strings.Join(slices.Sorted(slices.Values(names)), ", "))
}

// typeName is a search attribute type as the temporal CLI spells it
// (Keyword, Int, ...).
func typeName(t enumspb.IndexedValueType) string { return t.String() }

// checkWebhook: the webhook server's secret and owner list, as it reads them.
func (p *preflight) checkWebhook() {
	switch s := p.cfg.WebhookSecret; {
	case s == "" || s == devWebhookSecret:
		p.report("webhook secret", fail("set GITHUB_WEBHOOK_SECRET to a random value (openssl rand -hex 32), the same in the GitHub App's webhook",
			"GITHUB_WEBHOOK_SECRET is unset or make dev's well-known default"))
	case len(s) < 20:
		p.report("webhook secret", fail("use a random value of 32 bytes or more (openssl rand -hex 32)", "GITHUB_WEBHOOK_SECRET is only %d characters", len(s)))
	default:
		p.report("webhook secret", pass("set (%d characters)", len(s)))
	}
	if len(p.cfg.AllowedOwners) == 0 {
		p.report("allowed owners", fail("set DRYDOCK_ALLOWED_OWNERS to your organizations and users (the webhook server refuses to start without it)",
			"DRYDOCK_ALLOWED_OWNERS is unset"))
		return
	}
	p.report("allowed owners", pass("%s", strings.Join(p.cfg.AllowedOwners, ", ")))
}

// checkDomains: the host of a preview URL (PREVIEW_PUBLIC_URL, filled in
// with a sample pull request) and the router's preview domain resolve.
func (p *preflight) checkDomains(ctx context.Context) {
	filled := strings.NewReplacer("{number}", "1", "{owner}", "octo-org", "{repo}", "app").Replace(p.cfg.PreviewPublicURL)
	u, err := url.Parse(filled)
	if err != nil || u.Hostname() == "" {
		p.report("preview URL", fail("set PREVIEW_PUBLIC_URL to an absolute URL with {number}, {owner} and {repo}", "%q is not an absolute URL", p.cfg.PreviewPublicURL))
	} else {
		p.report("preview URL resolves", p.resolves(ctx, u.Hostname()))
	}
	p.report("preview domain resolves", p.resolves(ctx, "pr-1."+strings.TrimSuffix(p.cfg.PreviewDomain, ".")))
}

func (p *preflight) resolves(ctx context.Context, host string) outcome {
	if net.ParseIP(host) != nil {
		return pass("%s is an address", host)
	}
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	addrs, err := p.lookup(cctx, host)
	if err != nil || len(addrs) == 0 {
		fix := "create a wildcard DNS record for the preview domain pointing at the routers' load balancer"
		if strings.HasSuffix(host, ".localhost") {
			fix = "*.localhost resolves only in browsers, on this machine: " + fix + ", and set PREVIEW_DOMAIN and PREVIEW_PUBLIC_URL to it"
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			err = errors.New(dnsErr.Err)
		}
		return fail(fix, "%s: %v", host, orNoAddress(err))
	}
	return pass("%s: %s", host, strings.Join(addrs, ", "))
}

func orNoAddress(err error) error {
	if err == nil {
		return errors.New("no address")
	}
	return err
}
