package pools

import "testing"

// A per-repo or fresh jit pool at organization scope registers each runner
// at its job's repository, so GitHub hands it no other repository's job;
// shared and persistent pools, and repository pools, register at their own
// scope.
func TestRunnerScopeKeepsPerRepoRunnersToTheirRepository(t *testing.T) {
	org := Scope{Kind: ScopeOrg, Org: "octo"}
	repo := Scope{Kind: ScopeRepo, Repo: "octo/app"}
	for _, c := range []struct {
		name string
		p    Pool
		repo string
		want Scope
	}{
		{"per-repo by default", Pool{Mode: ModeJIT, Scope: org, RunnerGroupID: 7}, "octo/app", repo},
		{"fresh", Pool{Mode: ModeJIT, Scope: org, Isolation: IsolationFresh}, "octo/app", repo},
		{"shared", Pool{Mode: ModeJIT, Scope: org, Isolation: IsolationShared}, "octo/app", org},
		{"persistent", Pool{Mode: ModePersistent, Scope: org}, "octo/app", org},
		{"repository pool", Pool{Mode: ModeJIT, Scope: Scope{Kind: ScopeRepo, Repo: "octo/lib"}}, "octo/app", Scope{Kind: ScopeRepo, Repo: "octo/lib"}},
		{"unknown repository", Pool{Mode: ModeJIT, Scope: org}, "", org},
		{"another owner's repository", Pool{Mode: ModeJIT, Scope: org}, "evil/app", org},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.p.RunnerScope(c.repo)
			if got != c.want {
				t.Fatalf("RunnerScope(%q) = %+v, want %+v", c.repo, got, c.want)
			}
			wantGroup := c.p.RunnerGroupID
			if got != c.p.Scope {
				wantGroup = DefaultRunnerGroupID
			}
			if g := c.p.RunnerGroup(got); g != wantGroup {
				t.Fatalf("RunnerGroup = %d, want %d", g, wantGroup)
			}
		})
	}
}
