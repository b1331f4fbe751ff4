package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/testenv"
)

const (
	pfOrg   = "octo-org"
	pfAppID = 77
	pfInst  = 770
	pfPools = `{"pools": [{"name": "linux", "labels": ["self-hosted", "linux"], "scope": {"kind": "org", "org": "octo-org"},
	  "repositories": ["*"], "allow_default_group": true,
	  "machine": {"vcpu": 1, "memory_mib": 512, "storage_gib": 2, "autosleep": "5m"}, "max_machines": 2}]}`
)

// pfWorld is the real services a preflight test checks against: a Temporal
// dev server, the Dedalus emulator, the GitHub double with the App
// installed on octo-org.
type pfWorld struct {
	temporal string
	emu      *emulator.Server
	gh       *githubtest.Server
	keyFile  string
}

func newPFWorld(t *testing.T) *pfWorld {
	t.Helper()
	srv, err := testenv.StartTemporal(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	emu, err := emulator.New(emulator.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		BootDelay: 10 * time.Millisecond, WakeDelay: 10 * time.Millisecond, SleepDelay: 10 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, emu.Start())
	t.Cleanup(func() { _ = emu.Close(context.Background()) })
	g := githubtest.New(t)
	key, keyFile := githubtest.GenerateAppKey(t)
	g.AddApp(pfAppID, "drydock-test", &key.PublicKey)
	g.AddInstallation(pfAppID, pfInst)
	g.SetInstallationAccount(pfInst, pfOrg, "Organization")
	g.AddOrg(pfOrg)
	g.SetAppWebhook(pfAppID, "https://hooks.example.com/webhooks/github")
	return &pfWorld{temporal: srv.FrontendHostPort(), emu: emu, gh: g, keyFile: keyFile}
}

// config is a deployment's configuration that passes every check.
func (w *pfWorld) config() Config {
	return Config{
		Temporal:      config.Temporal{Address: w.temporal, Namespace: "default"},
		Dedalus:       dedalus.Config{BaseURL: w.emu.URL(), APIKey: w.emu.APIKey()},
		WebhookSecret: "0123456789abcdef0123456789abcdef",
		RunnerPools:   pfPools,
		GitHub:        gh.Config{AppID: pfAppID, AppPrivateKeyFile: w.keyFile, APIURL: w.gh.URL()},
		AllowedOwners: []string{pfOrg},
		// The preview hosts resolve through the test's resolver.
		PreviewPublicURL: "https://pr-{number}--{owner}--{repo}.preview.example.com",
		PreviewDomain:    "preview.example.com",
	}
}

// run runs preflight; it returns each check's status by name, the output
// and the error.
func (w *pfWorld) run(t *testing.T, cfg Config, createMachine bool) (map[string]string, string, error) {
	t.Helper()
	var out bytes.Buffer
	p := &preflight{cfg: cfg, out: &out, createMachine: createMachine, timeout: 10 * time.Second,
		lookup: func(_ context.Context, host string) ([]string, error) {
			if strings.HasSuffix(host, ".preview.example.com") || host == "hooks.example.com" {
				return []string{"192.0.2.10"}, nil
			}
			return nil, &net404{host}
		}}
	err := p.run(context.Background())
	status := map[string]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		st, rest, ok := strings.Cut(line, "  ")
		name, _, ok2 := strings.Cut(rest, ":")
		if ok && ok2 {
			status[strings.TrimSpace(name)] = strings.TrimSpace(st)
		}
	}
	return status, out.String(), err
}

type net404 struct{ host string }

func (e *net404) Error() string { return "no such host " + e.host }

// TestPreflight runs its cases in order against one world (GitHub,
// Temporal and the emulator); a case that changes the world restores it.
func TestPreflight(t *testing.T) {
	w := newPFWorld(t)
	for _, c := range []struct {
		name  string
		check func(*testing.T, *pfWorld)
	}{
		{"a ready deployment passes every check, a machine created and deleted", preflightReady},
		{"an installation without the runner permission fails with the fix", preflightMissingRunnerPermission},
		{"a per-repo pool at org scope also needs to manage its repositories' runners", preflightPerRepoPoolAtOrgScope},
		{"an owner the App is not installed on, a weak secret, an unresolvable domain", preflightOwnerSecretDomain},
		{"an App not subscribed to workflow_job, delivering over http", preflightAppEventsAndWebhook},
		{"a classic token without admin:org, then a fine-grained one GitHub refuses the runners", preflightTokens},
		{"a wrong Dedalus key and a wrong App key", preflightWrongKeys},
		{"a namespace that does not exist, then one without Drydock's search attributes", preflightNamespace},
	} {
		t.Run(c.name, func(t *testing.T) { c.check(t, w) })
	}
}

// preflightReady: a ready deployment passes every check, a machine created and deleted.
func preflightReady(t *testing.T, w *pfWorld) {
	st, out, err := w.run(t, w.config(), true)
	require.NoError(t, err, out)
	assert.NotContains(t, out, "FAIL")
	for _, name := range []string{"temporal reachable", "temporal namespace", "temporal search attributes", "webhook secret",
		"allowed owners", "github credential", "github app events", "github app webhook", "github app installed (octo-org)", "github permissions (installation 770, octo-org)",
		"github runner permissions (pool linux)", "dedalus key", "dedalus machine", "preview URL resolves", "preview domain resolves"} {
		assert.Equal(t, "ok", st[name], "%s\n%s", name, out)
	}
	assert.Contains(t, out, "created, ran and deleted")
	assert.Equal(t, 0, w.emu.Stats().LiveMachines, "the machine is gone")
}

// preflightMissingRunnerPermission: an installation without the runner permission fails with the fix.
func preflightMissingRunnerPermission(t *testing.T, w *pfWorld) {
	perms := map[string]string{"contents": "read", "deployments": "write", "pull_requests": "write", "issues": "write", "metadata": "read", "actions": "read"}
	w.gh.SetInstallationPermissions(pfInst, perms)
	defer w.gh.SetInstallationPermissions(pfInst, nil)
	st, out, err := w.run(t, w.config(), false)
	require.ErrorContains(t, err, "1 check(s) failed")
	assert.Equal(t, "FAIL", st["github runner permissions (pool linux)"], out)
	assert.Contains(t, out, "org scope octo-org needs Organization › Self-hosted runners: read and write (has none)")
	assert.Contains(t, out, "accept them in the installation's settings")
	assert.Equal(t, "ok", st["github permissions (installation 770, octo-org)"], "previews' permissions are all there")
}

// preflightPerRepoPoolAtOrgScope: a per-repo pool at org scope also needs to manage its repositories' runners.
func preflightPerRepoPoolAtOrgScope(t *testing.T, w *pfWorld) {
	perms := map[string]string{"contents": "read", "deployments": "write", "pull_requests": "write", "issues": "write", "metadata": "read",
		"actions": "read", "organization_self_hosted_runners": "write"}
	w.gh.SetInstallationPermissions(pfInst, perms)
	defer w.gh.SetInstallationPermissions(pfInst, nil)
	st, out, err := w.run(t, w.config(), false)
	require.ErrorContains(t, err, "1 check(s) failed")
	assert.Equal(t, "FAIL", st["github runner permissions (pool linux)"], out)
	assert.Contains(t, out, "org scope octo-org needs Administration: read and write")

	cfg := w.config()
	cfg.RunnerPools = strings.Replace(pfPools, `"allow_default_group": true,`, `"allow_default_group": true, "isolation": "shared",`, 1)
	st, out, err = w.run(t, cfg, false)
	require.NoError(t, err, out)
	assert.Equal(t, "ok", st["github runner permissions (pool linux)"], "a shared pool registers at the organization only")
}

// preflightOwnerSecretDomain: an owner the App is not installed on, a weak secret, an unresolvable domain.
func preflightOwnerSecretDomain(t *testing.T, w *pfWorld) {
	cfg := w.config()
	cfg.AllowedOwners = []string{pfOrg, "elsewhere"}
	cfg.WebhookSecret = devWebhookSecret
	cfg.PreviewDomain = "preview.localhost"
	st, out, err := w.run(t, cfg, false)
	require.ErrorContains(t, err, "3 check(s) failed")
	assert.Equal(t, "FAIL", st["github app installed (elsewhere)"], out)
	assert.Contains(t, out, "install the App on elsewhere: "+strings.TrimSuffix(w.gh.URL(), "/")+"/apps/drydock-test/installations/new")
	assert.Equal(t, "FAIL", st["webhook secret"])
	assert.Equal(t, "FAIL", st["preview domain resolves"])
	assert.Contains(t, out, "*.localhost resolves only in browsers")
}

// preflightAppEventsAndWebhook: an App not subscribed to workflow_job, delivering over http.
func preflightAppEventsAndWebhook(t *testing.T, w *pfWorld) {
	w.gh.SetAppEvents(pfAppID, "pull_request")
	w.gh.SetAppWebhook(pfAppID, "http://hooks.example.com/webhooks/github")
	defer w.gh.SetAppEvents(pfAppID, "pull_request", "workflow_job")
	defer w.gh.SetAppWebhook(pfAppID, "https://hooks.example.com/webhooks/github")
	st, out, err := w.run(t, w.config(), false)
	require.ErrorContains(t, err, "2 check(s) failed")
	assert.Equal(t, "FAIL", st["github app events"], out)
	assert.Contains(t, out, "the App does not subscribe to workflow_job")
	assert.Equal(t, "FAIL", st["github app webhook"], out)
	assert.Contains(t, out, "is not https")
}

// preflightTokens: a classic token without admin:org, then a fine-grained one GitHub refuses the runners.
func preflightTokens(t *testing.T, w *pfWorld) {
	w.gh.AddToken("ghp_classic_preflight", "ops")
	w.gh.SetTokenScopes("ghp_classic_preflight", "repo")
	cfg := w.config()
	cfg.GitHub = gh.Config{Token: "ghp_classic_preflight", APIURL: w.gh.URL()}
	st, out, err := w.run(t, cfg, false)
	require.Error(t, err)
	assert.Equal(t, "FAIL", st["github token scopes"], out)
	assert.Contains(t, out, "lacks admin:org or manage_runners:org (pool linux)")
	assert.Equal(t, "ok", st["github runner access (pool linux)"], out)

	w.gh.AddToken("github_pat_preflight", "ops")
	cfg.GitHub.Token = "github_pat_preflight"
	refusal := githubtest.Error(http.StatusForbidden, "Resource not accessible by personal access token")
	refusal.Header = http.Header{"X-Accepted-Github-Permissions": {"organization_self_hosted_runners=read"}}
	w.gh.FailNext(githubtest.RouteListOrgRunners, 1, refusal)
	st, out, err = w.run(t, cfg, false)
	require.ErrorContains(t, err, "1 check(s) failed")
	assert.Equal(t, "note", st["github token permissions"], out)
	assert.Equal(t, "FAIL", st["github runner access (pool linux)"], out)
	assert.Contains(t, out, "GitHub accepts organization_self_hosted_runners=read")
}

// preflightWrongKeys: a wrong Dedalus key and a wrong App key.
func preflightWrongKeys(t *testing.T, w *pfWorld) {
	cfg := w.config()
	cfg.Dedalus.APIKey = "not-the-key"
	_, otherKey := githubtest.GenerateAppKey(t)
	cfg.GitHub.AppPrivateKeyFile = otherKey
	st, out, err := w.run(t, cfg, true)
	require.ErrorContains(t, err, "2 check(s) failed")
	assert.Equal(t, "FAIL", st["dedalus key"], out)
	assert.Contains(t, out, "DEDALUS_API_KEY is wrong, revoked or for another organization")
	assert.Empty(t, st["dedalus machine"], "no machine is tried with a refused key")
	assert.Equal(t, "FAIL", st["github credential"])
	assert.Contains(t, out, "is a current key of that App")
}

// preflightNamespace: a namespace that does not exist, then one without Drydock's search attributes.
func preflightNamespace(t *testing.T, w *pfWorld) {
	cfg := w.config()
	cfg.Temporal.Namespace = "nowhere"
	st, out, err := w.run(t, cfg, false)
	require.ErrorContains(t, err, "1 check(s) failed")
	assert.Equal(t, "ok", st["temporal reachable"], out)
	assert.Equal(t, "FAIL", st["temporal namespace"], out)
	assert.Contains(t, out, "temporal operator namespace create --namespace nowhere")

	ctx := context.Background()
	tc, err := cfg.Temporal.DialLazy(nil)
	require.NoError(t, err)
	defer tc.Close()
	_, err = tc.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: "bare", WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)})
	require.NoError(t, err)
	_, err = tc.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: "bare", SearchAttributes: map[string]enumspb.IndexedValueType{"DrydockRepo": enumspb.INDEXED_VALUE_TYPE_TEXT}})
	require.NoError(t, err)
	cfg.Temporal.Namespace = "bare"
	for deadline := time.Now().Add(30 * time.Second); ; { // a new namespace takes a moment to be served
		st, out, _ = w.run(t, cfg, false)
		if st["temporal search attributes"] != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	assert.Equal(t, "FAIL", st["temporal search attributes"], out)
	assert.Contains(t, out, "DrydockRepo is Text, want Keyword")
}

// A namespace missing search attributes gets the command that registers
// them, with the types the CLI spells.
func TestSearchAttributeOutcomeNamesTheMissing(t *testing.T) {
	o := searchAttributeOutcome("x", map[string]enumspb.IndexedValueType{
		"DrydockRepo": enumspb.INDEXED_VALUE_TYPE_KEYWORD, "DrydockPRNumber": enumspb.INDEXED_VALUE_TYPE_INT,
		"DrydockMachineID": enumspb.INDEXED_VALUE_TYPE_KEYWORD, "DrydockPhase": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	})
	assert.Equal(t, "FAIL", o.status)
	assert.Equal(t, "x lacks 2 of Drydock's search attributes", o.detail)
	assert.Contains(t, o.fix, "temporal operator search-attribute create --namespace x")
	assert.Contains(t, o.fix, "--name DrydockPool --type Keyword")
	assert.Contains(t, o.fix, "--name DrydockJobID --type Int")
}
