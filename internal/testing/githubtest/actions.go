package githubtest

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"weak"

	"github.com/drydock-dev/drydock/internal/pools"
)

// actionsState is the double's GitHub Actions side: self-hosted runners,
// workflow jobs and the registration tokens it issued. Its fields are
// guarded by the owning Server's mu, like the rest of the double's state.
type actionsState struct {
	orgs    map[string]bool // lower-case logins added with AddOrg
	runners []*runnerState  // registered (not deleted), in creation order
	jobs    []*jobState     // in creation order: oldest first
	tokens  []string        // registration tokens, in issue order
	// tokenScope is the scope each registration token registers runners in.
	tokenScope map[string]pools.Scope
	onJob      []func(action string, job Job)
	// groupRepos restricts an organization runner group to repositories
	// ("org#group" -> lower-case owner/name), as GitHub's "selected
	// repositories" access; a group not in it serves every repository.
	groupRepos map[string][]string
	jitConfigs []string // every encoded JIT config issued, in issue order
	onRegister []func(name string)
}

// byID is the job or runner of items whose ID is id, or nil. Callers hold
// s.mu.
func byID[S interface {
	comparable
	itemID() int64
}](items []S, id int64) S {
	var none S
	for _, it := range items {
		if it.itemID() == id {
			return it
		}
	}
	return none
}

// snapshots copies out every job or runner of items, in order (nil for
// none). Callers hold s.mu.
func snapshots[T any, S interface{ snapshot() T }](items []S) []T {
	var out []T
	for _, it := range items {
		out = append(out, it.snapshot())
	}
	return out
}

// The Actions state lives beside its Server rather than in it, keyed weakly
// so a closed and collected Server takes its state with it; this keeps the
// runner and job double in its own files.
var actionsStates sync.Map // weak.Pointer[Server] -> *actionsState

// actions returns s's Actions state, creating it on first use.
func (s *Server) actions() *actionsState {
	key := weak.Make(s)
	if st, ok := actionsStates.Load(key); ok {
		return st.(*actionsState)
	}
	st, loaded := actionsStates.LoadOrStore(key, &actionsState{orgs: map[string]bool{}, tokenScope: map[string]pools.Scope{}})
	if !loaded {
		runtime.AddCleanup(s, func(k weak.Pointer[Server]) { actionsStates.Delete(k) }, key)
	}
	return st.(*actionsState)
}

// RestrictRunnerGroup gives organization org's runner group groupID access
// to these repositories (owner/name) only, as GitHub's runner group
// setting "Selected repositories" does: its runners are handed no other
// repository's jobs.
func (s *Server) RestrictRunnerGroup(org string, groupID int64, repos ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions()
	if a.groupRepos == nil {
		a.groupRepos = map[string][]string{}
	}
	key := fmt.Sprintf("%s#%d", strings.ToLower(org), groupID)
	a.groupRepos[key] = nil
	for _, r := range repos {
		a.groupRepos[key] = append(a.groupRepos[key], strings.ToLower(r))
	}
}

// AddOrg makes organization org exist for the organization runner routes
// (owners of repositories added with AddRepo exist too). Calls for an
// organization that does not exist answer 404, as GitHub does.
func (s *Server) AddOrg(org string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actions().orgs[strings.ToLower(org)] = true
}

// orgExists reports whether org was added or owns a repository. Callers hold s.mu.
func (s *Server) orgExists(org string) bool {
	if s.actions().orgs[strings.ToLower(org)] {
		return true
	}
	for _, r := range s.repos {
		if strings.EqualFold(r.owner, org) {
			return true
		}
	}
	return false
}

// scopeKey is the canonical form of a runner scope: "org:<login>" or
// "repo:<owner>/<repo>", lower case ("" for an invalid scope).
func scopeKey(sc pools.Scope) string {
	switch sc.Kind {
	case pools.ScopeOrg:
		if sc.Org == "" {
			return ""
		}
		return "org:" + strings.ToLower(sc.Org)
	case pools.ScopeRepo:
		if !strings.Contains(sc.Repo, "/") {
			return ""
		}
		return "repo:" + strings.ToLower(sc.Repo)
	}
	return ""
}

// scopeOf is the runner scope a request's path names, or nil after
// answering 404 when its organization or repository does not exist.
// Callers hold s.mu.
func (s *Server) scopeOf(c *call) *pools.Scope {
	if org := c.r.PathValue("org"); org != "" {
		if !s.orgExists(org) {
			writeError(c.w, 404, "Not Found")
			return nil
		}
		return &pools.Scope{Kind: pools.ScopeOrg, Org: org}
	}
	r := s.repoFor(c)
	if r == nil {
		return nil
	}
	return &pools.Scope{Kind: pools.ScopeRepo, Repo: r.owner + "/" + r.name}
}
