package main

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-github/v62/github"

	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
)

// checkGitHubToken: the token authenticates; a classic token's scopes
// (X-OAuth-Scopes, which GitHub sends on every answer to one) cover the
// features; each pool's runners can be listed at its scope.
func (p *preflight) checkGitHubToken(ctx context.Context, clients *gh.Clients) {
	gc, err := clients.ForInstallation(0)
	if err != nil {
		p.report("github credential", fail("correct GITHUB_TOKEN", "%v", err))
		return
	}
	user, resp, err := gc.Users.Get(ctx, "")
	if err != nil {
		p.report("github credential", fail("GITHUB_TOKEN is wrong, expired or revoked: issue a new one", "GET /user: %v", ghError(err)))
		return
	}
	p.report("github credential", pass("token of %s", user.GetLogin()))
	if _, classic := resp.Header["X-Oauth-Scopes"]; classic {
		p.checkScopes(scopeList(resp.Header.Get("X-OAuth-Scopes")))
	} else {
		p.report("github token permissions", note("a fine-grained token's permissions cannot be listed: on the repositories with previews it needs "+
			"Contents: read, Deployments, Pull requests and Issues: read and write (the runner pools are probed below)"))
	}
	api, err := clients.API(0)
	if err != nil {
		p.report("github credential", fail("correct GITHUB_TOKEN", "%v", err))
		return
	}
	for _, pool := range p.pools.Pools {
		p.report("github runner access (pool "+pool.Name+")", probeRunners(ctx, api, pool.Scope))
		if !pool.RegistersAtRepositories() {
			continue
		}
		// Its JIT runners register at their jobs' repositories: those
		// it names are probed (not those it reaches through "*" or owners).
		for _, repo := range pool.Repositories {
			if s := pool.RunnerScope(repo); s != pool.Scope {
				p.report("github runner access (pool "+pool.Name+", "+repo+")", probeRunners(ctx, api, s))
			}
		}
	}
}

func scopeList(header string) []string {
	var out []string
	for _, s := range strings.Split(header, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// checkScopes: previews need repo; organization pools admin:org (or
// manage_runners:org), repository pools repo.
func (p *preflight) checkScopes(have []string) {
	has := func(names ...string) bool {
		return slices.ContainsFunc(names, func(s string) bool { return slices.Contains(have, s) })
	}
	var miss []string
	if !has("repo") {
		miss = append(miss, "repo (previews: deployments, pull requests, contents)")
	}
	for _, pool := range p.pools.Pools {
		if pool.Scope.Kind == pools.ScopeOrg && !has("admin:org", "manage_runners:org") {
			miss = append(miss, "admin:org or manage_runners:org (pool "+pool.Name+")")
		}
	}
	if len(miss) > 0 {
		p.report("github token scopes", fail("issue a classic token with these scopes, or use a GitHub App",
			"the token has [%s], lacks %s", strings.Join(have, ", "), strings.Join(miss, "; ")))
		return
	}
	p.report("github token scopes", pass("%s", strings.Join(have, ", ")))
}

// probeRunners lists the runners at a scope of a pool, which needs the
// permission that managing them does at its read level; GitHub's
// X-Accepted-GitHub-Permissions says which, when it refuses.
func probeRunners(ctx context.Context, api *gh.API, scope pools.Scope) outcome {
	_, err := api.ListRunners(ctx, scope)
	if err == nil {
		return pass("can list the self-hosted runners of %s", scopeText(scope))
	}
	fix := "give the token the permission to manage self-hosted runners of " + scopeText(scope)
	var er *github.ErrorResponse
	if asErrorResponse(err, &er) && er.Response != nil {
		if acc := er.Response.Header.Get("X-Accepted-GitHub-Permissions"); acc != "" {
			fix += " (GitHub accepts " + acc + ")"
		}
		if er.Response.StatusCode == http.StatusNotFound {
			fix += "; a 404 also means the organization or repository does not exist"
		}
	}
	return fail(fix, "%s: %v", scopeText(scope), ghError(err))
}
