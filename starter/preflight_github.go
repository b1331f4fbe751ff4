package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-github/v62/github"

	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
)

// need is one permission a feature needs: GitHub's key, the least level,
// and its name in the App's settings.
type need struct{ key, level, label string }

var (
	previewNeeds = []need{
		{"contents", "read", "Contents: read"}, {"deployments", "write", "Deployments: read and write"},
		{"pull_requests", "write", "Pull requests: read and write"}, {"issues", "write", "Issues: read and write"},
		{"metadata", "read", "Metadata: read"},
	}
	orgPoolNeeds = []need{
		{"organization_self_hosted_runners", "write", "Organization › Self-hosted runners: read and write"},
		{"actions", "read", "Actions: read"},
	}
	repoPoolNeeds = []need{
		{"administration", "write", "Administration: read and write"}, {"actions", "read", "Actions: read"},
	}
)

// levels ranks GitHub's permission levels.
var levels = map[string]int{"read": 1, "write": 2, "admin": 3}

// lacking lists the needs perms does not cover.
func lacking(perms map[string]string, needs []need) []string {
	var out []string
	for _, n := range needs {
		if levels[perms[n.key]] < levels[n.level] {
			have := perms[n.key]
			if have == "" {
				have = "none"
			}
			out = append(out, fmt.Sprintf("%s (has %s)", n.label, have))
		}
	}
	return out
}

// installation is the part of GitHub's installation object preflight reads.
type installation struct {
	ID      int64 `json:"id"`
	Account struct {
		Login string `json:"login"`
	} `json:"account"`
	Permissions map[string]string `json:"permissions"`
}

// checkGitHub: the credential works and holds what the enabled features
// need (previews always; runner pools when configured), and the App is
// installed on the configured owners.
func (p *preflight) checkGitHub(ctx context.Context) {
	if !p.cfg.GitHub.Configured() {
		p.report("github credential", fail("set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE (or GITHUB_TOKEN) as the worker has them",
			"none configured: the worker would run in local mode, reporting nothing to GitHub and starting no runners"))
		return
	}
	clients, err := gh.NewClients(p.cfg.GitHub)
	if err != nil {
		p.report("github credential", fail("correct the GITHUB_* settings", "%v", err))
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 4*p.timeout)
	defer cancel()
	if clients.Mode() == "token" {
		p.checkGitHubToken(cctx, clients)
		return
	}
	p.checkGitHubApp(cctx, clients)
}

// checkGitHubApp: the App's key, its installations on the owners and
// GITHUB_APP_INSTALLATION_ID, and their permissions.
func (p *preflight) checkGitHubApp(ctx context.Context, clients *gh.Clients) {
	ac, err := clients.AppClient()
	if err != nil {
		p.report("github credential", fail("correct the GITHUB_APP_* settings", "%v", err))
		return
	}
	app, _, err := ac.Apps.Get(ctx, "")
	if err != nil {
		p.report("github credential", fail("check GITHUB_APP_ID and that GITHUB_APP_PRIVATE_KEY_FILE is a current key of that App (App settings › Private keys)",
			"GET /app: %v", ghError(err)))
		return
	}
	p.report("github credential", pass("App %s (ID %d), private key accepted", app.GetSlug(), app.GetID()))
	p.report("github app events", appEvents(app.Events, len(p.pools.Pools) > 0))
	p.report("github app webhook", p.appWebhook(ctx, ac))
	p.checkInstallations(ctx, ac, clients.WebURL()+"/apps/"+app.GetSlug()+"/installations/new")
}

// appEvents: the App subscribes to pull_request (previews) and, with
// pools, workflow_job.
func appEvents(have []string, pools bool) outcome {
	want := []string{"pull_request"}
	if pools {
		want = append(want, "workflow_job")
	}
	var miss []string
	for _, e := range want {
		if !slices.Contains(have, e) {
			miss = append(miss, e)
		}
	}
	if len(miss) > 0 {
		return fail("subscribe the App to them: App settings › Permissions & events › Subscribe to events (Pull request, Workflow job)",
			"the App does not subscribe to %s", strings.Join(miss, ", "))
	}
	return pass("subscribed to %s", strings.Join(want, ", "))
}

// appWebhook: the App delivers to an https URL on Drydock's path whose
// host resolves. (Whether GitHub reaches it, only a delivery tells: ping
// it from the App's settings once deployed.)
func (p *preflight) appWebhook(ctx context.Context, ac *github.Client) outcome {
	const fix = "set the App's webhook URL (App settings › General › Webhook) to https://<webhook host>/webhooks/github, active, with GITHUB_WEBHOOK_SECRET as its secret"
	var hook struct {
		URL string `json:"url"`
	}
	found, err := appGet(ctx, ac, "app/hook/config", &hook)
	switch {
	case err != nil:
		return fail("check the App's credentials and GitHub's status", "GET /app/hook/config: %v", ghError(err))
	case !found || hook.URL == "":
		return fail(fix, "the App has no webhook URL")
	}
	u, err := url.Parse(hook.URL)
	switch {
	case err != nil || u.Host == "":
		return fail(fix, "%q is not a URL", hook.URL)
	case u.Scheme != "https":
		return fail(fix, "%s is not https: deliveries would cross the internet in the clear", hook.URL)
	case !strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/webhooks/github"):
		return fail(fix, "%s is not the webhook server's path /webhooks/github", hook.URL)
	}
	if o := p.resolves(ctx, u.Hostname()); o.status != "ok" {
		return fail(fix, "%s: %s", hook.URL, o.detail)
	}
	return pass("%s", hook.URL)
}

// checkInstallations: the App's installation on each owner and on
// GITHUB_APP_INSTALLATION_ID grants previews' permissions, and the one on
// each pool's scope its runners'.
func (p *preflight) checkInstallations(ctx context.Context, ac *github.Client, install string) {
	checked := map[int64]bool{}
	permissions := func(in *installation) {
		if checked[in.ID] {
			return
		}
		checked[in.ID] = true
		name := fmt.Sprintf("github permissions (installation %d, %s)", in.ID, in.Account.Login)
		if miss := lacking(in.Permissions, previewNeeds); len(miss) > 0 {
			p.report(name, fail("grant them in the App's settings › Permissions, then have "+orDash(in.Account.Login)+
				" accept the new permissions in the installation's settings", "previews need %s", strings.Join(miss, ", ")))
			return
		}
		p.report(name, pass("previews' permissions granted"))
	}
	for _, owner := range p.cfg.AllowedOwners {
		in, o := p.ownerInstallation(ctx, ac, owner, install)
		p.report("github app installed ("+owner+")", o)
		if in != nil {
			permissions(in)
		}
	}
	if id := p.cfg.GitHub.AppInstallationID; id != 0 {
		in, o := getInstallation(ctx, ac, id, install)
		p.report("github app installation "+strconv.FormatInt(id, 10), o)
		if in != nil {
			permissions(in)
		}
	}
	for _, pool := range p.pools.Pools {
		p.report("github runner permissions (pool "+pool.Name+")", p.poolPermissions(ctx, ac, pool, install))
	}
}

// ownerInstallation finds the App's installation for one DRYDOCK_ALLOWED_OWNERS entry.
func (p *preflight) ownerInstallation(ctx context.Context, ac *github.Client, owner, install string) (*installation, outcome) {
	if owner == "*" {
		return nil, note("* accepts every owner the App is installed on: no owner to check")
	}
	if idText, ok := strings.CutPrefix(owner, "installation:"); ok {
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil {
			return nil, fail("write installation:<numeric ID>", "%q is not an installation ID", owner)
		}
		return getInstallation(ctx, ac, id, install)
	}
	in, err := findInstallation(ctx, ac, owner)
	switch {
	case err != nil:
		return nil, fail("check the App's credentials and GitHub's status", "%s: %v", owner, ghError(err))
	case in == nil:
		return nil, fail("install the App on "+owner+": "+install, "the App is not installed on %s", owner)
	}
	return in, pass("installation %d", in.ID)
}

func getInstallation(ctx context.Context, ac *github.Client, id int64, install string) (*installation, outcome) {
	var in installation
	found, err := appGet(ctx, ac, fmt.Sprintf("app/installations/%d", id), &in)
	switch {
	case err != nil:
		return nil, fail("check the App's credentials and GitHub's status", "installation %d: %v", id, ghError(err))
	case !found:
		return nil, fail("install the App ("+install+") and use the ID its settings URL shows", "installation %d is not this App's", id)
	}
	return &in, pass("installation %d on %s", in.ID, orDash(in.Account.Login))
}

// findInstallation asks for the App's installation on an organization,
// then on a user of that login; nil when there is none.
func findInstallation(ctx context.Context, ac *github.Client, login string) (*installation, error) {
	for _, path := range []string{"orgs/%s/installation", "users/%s/installation"} {
		var in installation
		found, err := appGet(ctx, ac, fmt.Sprintf(path, login), &in)
		if err != nil {
			return nil, err
		}
		if found {
			return &in, nil
		}
	}
	return nil, nil
}

// appGet GETs one of the App's endpoints into v; found is false on 404.
func appGet(ctx context.Context, ac *github.Client, path string, v any) (found bool, err error) {
	req, err := ac.NewRequest(http.MethodGet, path, nil)
	if err != nil {
		return false, err
	}
	resp, err := ac.Do(ctx, req, v)
	if resp != nil && resp.StatusCode == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// poolPermissions: the installation on the pool's organization or
// repository owner grants what its runners need.
func (p *preflight) poolPermissions(ctx context.Context, ac *github.Client, pool pools.Pool, install string) outcome {
	owner, needs := pool.Scope.Org, orgPoolNeeds
	switch {
	case pool.Scope.Kind == pools.ScopeRepo:
		owner, _, _ = strings.Cut(pool.Scope.Repo, "/")
		needs = repoPoolNeeds
	case pool.RegistersAtRepositories():
		// Its JIT runners register at their jobs' repositories.
		needs = append(slices.Clone(orgPoolNeeds), repoPoolNeeds[0])
	}
	in, err := findInstallation(ctx, ac, owner)
	switch {
	case err != nil:
		return fail("check the App's credentials and GitHub's status", "%s: %v", owner, ghError(err))
	case in == nil:
		return fail("install the App on "+owner+": "+install, "the App is not installed on %s, the pool's scope", owner)
	}
	if miss := lacking(in.Permissions, needs); len(miss) > 0 {
		return fail("grant them in the App's settings › Permissions, then have "+owner+" accept them in the installation's settings",
			"%s scope %s needs %s", pool.Scope.Kind, scopeText(pool.Scope), strings.Join(miss, ", "))
	}
	return pass("installation %d grants the runner permissions for %s", in.ID, scopeText(pool.Scope))
}

func scopeText(s pools.Scope) string {
	if s.Kind == pools.ScopeRepo {
		return s.Repo
	}
	return s.Org
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ghError shortens a go-github error to its status and message.
func ghError(err error) error {
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return fmt.Errorf("%d %s", er.Response.StatusCode, er.Message)
	}
	return err
}

func asErrorResponse(err error, target **github.ErrorResponse) bool { return errors.As(err, target) }
