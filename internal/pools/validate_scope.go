package pools

import (
	"fmt"
	"strings"
)

// Rules on where a pool's runners register (scope) and which repositories
// it serves. An organization pool must say which repositories or owners it
// takes (fail closed: no list is refused, ["*"] is every repository of the
// organization) and use its own runner group unless allow_default_group.

// scopeKindRules check the scope by its kind; any other kind is refused.
var scopeKindRules = map[string]func(*Pool, *problemList){
	ScopeOrg:  checkOrgScope,
	ScopeRepo: checkRepoScope,
	"":        checkScopeWithoutKind,
}

func checkScope(p *Pool, l *problemList) {
	rule, ok := scopeKindRules[p.Scope.Kind]
	if !ok {
		l.add("scope.kind", "must be org or repo (got %q)", p.Scope.Kind)
		return
	}
	rule(p, l)
}

func checkOrgScope(p *Pool, l *problemList) {
	if p.Scope.Org == "" {
		l.add("scope.org", "is required for scope kind org")
	} else if !githubLogin.MatchString(p.Scope.Org) {
		l.add("scope.org", "%q is not a GitHub organization login", p.Scope.Org)
	}
	if p.Scope.Repo != "" {
		l.add("scope.repo", "must be empty for scope kind org")
	}
}

func checkRepoScope(p *Pool, l *problemList) {
	if p.Scope.Repo == "" {
		l.add("scope.repo", "is required for scope kind repo (owner/name)")
	} else if !isOwnerName(p.Scope.Repo) {
		l.add("scope.repo", "must be owner/name (got %q)", p.Scope.Repo)
	}
	if p.Scope.Org != "" {
		l.add("scope.org", "must be empty for scope kind repo")
	}
}

// checkScopeWithoutKind: ApplyDefaults infers the kind when only one of org
// and repo is set.
func checkScopeWithoutKind(p *Pool, l *problemList) {
	if p.Scope.Org != "" || p.Scope.Repo != "" {
		l.add("scope.kind", "must say org or repo when both scope.org and scope.repo are set")
	} else {
		l.add("scope", "is required: {kind: org, org: NAME} or {kind: repo, repo: OWNER/NAME}")
	}
}

// isOwnerName reports whether s is a repository's full name, owner/name.
func isOwnerName(s string) bool {
	owner, name, ok := strings.Cut(s, "/")
	return ok && githubLogin.MatchString(owner) && githubRepo.MatchString(name) && name != "." && name != ".."
}

// checkable reports whether the scope is sound enough to check the pool's
// repositories, owners and runner group against; when it is not, only the
// scope's own problems are reported.
func (s Scope) checkable() bool {
	switch s.Kind {
	case ScopeOrg:
		return githubLogin.MatchString(s.Org) && s.Repo == ""
	case ScopeRepo:
		return s.Org == ""
	}
	return false
}

// displayName is the pool's name in messages.
func (p *Pool) displayName() string {
	if p.Name == "" {
		return "(unnamed)"
	}
	return p.Name
}

func checkRepositories(p *Pool, l *problemList) {
	if !p.Scope.checkable() {
		return
	}
	if p.Scope.Kind == ScopeOrg && len(p.Repositories) == 0 && len(p.Owners) == 0 {
		l.add("repositories", "is required: pool %s must list the repositories (owner/name) or owners whose jobs it takes, or repositories: [\"*\"] for every repository of organization %s", p.displayName(), p.Scope.Org)
	}
	for j, r := range p.Repositories {
		checkRepository(p, l, fmt.Sprintf("repositories[%d]", j), r)
	}
}

// checkRepository checks one of the pool's repositories: "*" alone, or a
// repository of the pool's organization, or the pool's repository.
func checkRepository(p *Pool, l *problemList, field, r string) {
	owner, _, _ := strings.Cut(r, "/")
	switch {
	case r == AnyRepository:
		if len(p.Repositories) > 1 {
			l.add(field, "\"*\" takes every repository: list it alone")
		}
	case !isOwnerName(r):
		l.add(field, "must be owner/name or \"*\" (got %q)", r)
	case p.Scope.Kind == ScopeOrg && !strings.EqualFold(owner, p.Scope.Org):
		l.add(field, "%q is not in organization %s, where the pool's runners register", r, p.Scope.Org)
	case p.Scope.Kind == ScopeRepo && !strings.EqualFold(r, p.Scope.Repo):
		l.add(field, "%q is not %s, where the pool's runners register", r, p.Scope.Repo)
	}
}

func checkOwners(p *Pool, l *problemList) {
	if !p.Scope.checkable() {
		return
	}
	for j, o := range p.Owners {
		field := fmt.Sprintf("owners[%d]", j)
		switch {
		case !githubLogin.MatchString(o):
			l.add(field, "%q is not a GitHub organization login", o)
		case p.Scope.Kind == ScopeOrg && !strings.EqualFold(o, p.Scope.Org):
			l.add(field, "%q is not organization %s, where the pool's runners register", o, p.Scope.Org)
		case p.Scope.Kind == ScopeRepo:
			l.add(field, "must be empty for scope kind repo (the pool serves %s)", p.Scope.Repo)
		}
	}
}

// checkOrgRunnerGroup: an organization's Default runner group is open to
// all its repositories, so an organization pool names its own group, or
// says allow_default_group (which a persistent pool, whose runner always
// lands in Default, must).
func checkOrgRunnerGroup(p *Pool, l *problemList) {
	if !p.Scope.checkable() || p.Scope.Kind != ScopeOrg || p.AllowDefaultGroup {
		return
	}
	switch {
	case p.RunnerGroupID == DefaultRunnerGroupID:
		l.add("runner_group_id", "must name the runner group of pool %s: the Default group (1) of organization %s is open to all its repositories (set allow_default_group: true to accept that)", p.displayName(), p.Scope.Org)
	case p.Mode == ModePersistent:
		l.add("allow_default_group", "must be true for pool %s: a persistent runner registers in organization %s's Default group (runner_group_id applies to JIT runners only)", p.displayName(), p.Scope.Org)
	}
}
