package pools

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every message Validate can give, in full and in the order given: the
// operator reads them, and docs and runbooks quote them. (The other tests
// check the problems one at a time, by substring.)
func TestValidateMessagesInFullAndInOrder(t *testing.T) {
	for _, tc := range validateMessageCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			require.Error(t, err)
			assert.Equal(t, "invalid runner pools configuration:\n- "+strings.Join(tc.want, "\n- "), err.Error())
		})
	}
}

// validateMessageCases are configurations with their messages, by topic.
var validateMessageCases = []struct {
	name string
	in   string
	want []string
}{
	{"every field of one pool", `[{"name":"Bad_Name","labels":["ok","","a,b"],"scope":{"kind":"org","org":"a b","repo":"a/b"},
	  "machine":{"vcpu":65,"memory_mib":10,"storage_gib":-2,"autosleep":"soon"},
	  "max_machines":-3,"min_idle":-1,"mode":"ephemeral","isolation":"per-org","runner_version":"latest",
	  "runner_group_id":-1,"pickup_timeout":"2h","lease_check_every":"4s","max_attempts":11,
	  "setup":[{"name":"none"},{"run":"a","command":["b"]},{"command":[""],"timeout":"0.5s"},{"run":"x","timeout":"7h"}],
	  "install":{"name":"x"},"runner_command":[" "],"caches":["/etc","~/tmp"],
	  "prewarm":[{"cron":"0 8 * *","count":1},{"cron":"61 8 * * *","count":0}]}]`, []string{
		`pools[0].name must be 1 to 39 lower-case letters, digits and dashes, starting with a letter or digit (got "Bad_Name")`,
		`pools[0].labels[1] is empty`,
		`pools[0].labels[2] "a,b" is not a runner label`,
		`pools[0].scope.org "a b" is not a GitHub organization login`,
		`pools[0].scope.repo must be empty for scope kind org`,
		`pools[0].machine.vcpu must be between 0 and 64 (got 65)`,
		`pools[0].machine.memory_mib must be between 256 and 262144 (got 10)`,
		`pools[0].machine.storage_gib must be between 1 and 4096 (got -2)`,
		`pools[0].machine.autosleep is invalid: autosleep "soon": want parts like 30s, 5m, 2h, 7d, 1w, raw seconds or "never"`,
		`pools[0].max_machines must be at least 1 (got -3)`,
		`pools[0].min_idle must not be negative (got -1)`,
		`pools[0].mode must be jit or persistent (got "ephemeral")`,
		`pools[0].isolation must be per-repo, shared or fresh (got "per-org")`,
		`pools[0].runner_version must be an actions/runner version like 2.321.0 (got "latest")`,
		`pools[0].runner_group_id must be at least 1 (got -1)`,
		`pools[0].pickup_timeout must be between 1s and 1h (got 2h0m0s)`,
		`pools[0].lease_check_every must be at least 5s (got 4s)`,
		`pools[0].max_attempts must be between 1 and 10 (got 11)`,
		`pools[0].setup[0] needs run (a shell script) or command (an argv list)`,
		`pools[0].setup[1] must give run or command, not both`,
		`pools[0].setup[2].command[0] is empty`,
		`pools[0].setup[2].timeout must be between 1s and 6h (got 500ms)`,
		`pools[0].setup[3].timeout must be between 1s and 6h (got 7h0m0s)`,
		`pools[0].install needs run (a shell script) or command (an argv list)`,
		`pools[0].runner_command[0] is empty`,
		`pools[0].caches[0] "/etc" must be a directory of the runner's home, written ~/dir`,
		`pools[0].caches[1] "~/tmp" is the runner's scratch space, not a cache`,
		`pools[0].prewarm[0].cron is invalid: cron "0 8 * *": want 5 fields (minute hour day-of-month month day-of-week), got 4`,
		`pools[0].prewarm[1].cron is invalid: cron "61 8 * * *": minute: "61" is not a value between 0 and 59`,
		`pools[0].prewarm[1].count must be at least 1 (got 0)`,
	}},
	{"labels, bounds and isolation", `[{"name":"ok","labels":["a"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3},
	  {"name":"long","labels":["` + strings.Repeat("l", 101) + `"],"scope":{"kind":"repo","repo":"acme/shop"},"mode":"persistent","isolation":"fresh"},
	  {"name":"nolabels","labels":[],"scope":{"kind":"org","org":"acme"},"owners":["acme"],"runner_group_id":3,"min_idle":5,"max_machines":4}]`, []string{
		`pools[1].labels[0] "` + strings.Repeat("l", 101) + `" is not a runner label`,
		`pools[1].isolation must be shared for persistent pool long (got "fresh"): GitHub gives a persistent runner any job of the pool, so the pool cannot keep a machine to one repository; use mode jit`,
		`pools[2].labels must list the runs-on labels the pool takes (e.g. [self-hosted, linux, x64])`,
		`pools[2].min_idle (5) must not exceed max_machines (4)`,
	}},
	{"scopes", `[{"name":"s1","labels":["a"]},
	  {"name":"s2","labels":["b"],"scope":{"org":"acme","repo":"acme/shop"}},
	  {"name":"s3","labels":["c"],"scope":{"kind":"enterprise","org":"acme"}},
	  {"name":"s4","labels":["d"],"scope":{"kind":"org"}},
	  {"name":"s5","labels":["e"],"scope":{"kind":"repo"}},
	  {"name":"s6","labels":["f"],"scope":{"kind":"repo","repo":"acme/.."}},
	  {"name":"s7","labels":["g"],"scope":{"kind":"repo","repo":"acme/shop","org":"acme"}}]`, []string{
		`pools[0].scope is required: {kind: org, org: NAME} or {kind: repo, repo: OWNER/NAME}`,
		`pools[1].scope.kind must say org or repo when both scope.org and scope.repo are set`,
		`pools[2].scope.kind must be org or repo (got "enterprise")`,
		`pools[3].scope.org is required for scope kind org`,
		`pools[4].scope.repo is required for scope kind repo (owner/name)`,
		`pools[5].scope.repo must be owner/name (got "acme/..")`,
		`pools[6].scope.org must be empty for scope kind repo`,
	}},
	{"repositories, owners and runner groups", `[{"name":"listed","labels":["a"],"scope":{"org":"acme"},"repositories":["acme/shop","*","shop","evil/shop"],"owners":["a b","evil"],"machine":{"vcpu":65}},
	  {"name":"persistent","labels":["b"],"scope":{"org":"acme"},"mode":"persistent","runner_group_id":3},
	  {"name":"repo","labels":["c"],"scope":{"repo":"acme/shop"},"repositories":["acme/lib"],"owners":["acme"]}]`, []string{
		`pools[0].repositories[1] "*" takes every repository: list it alone`,
		`pools[0].repositories[2] must be owner/name or "*" (got "shop")`,
		`pools[0].repositories[3] "evil/shop" is not in organization acme, where the pool's runners register`,
		`pools[0].owners[0] "a b" is not a GitHub organization login`,
		`pools[0].owners[1] "evil" is not organization acme, where the pool's runners register`,
		`pools[0].runner_group_id must name the runner group of pool listed: the Default group (1) of organization acme is open to all its repositories (set allow_default_group: true to accept that)`,
		`pools[0].machine.vcpu must be between 0 and 64 (got 65)`,
		`pools[1].repositories is required: pool persistent must list the repositories (owner/name) or owners whose jobs it takes, or repositories: ["*"] for every repository of organization acme`,
		`pools[1].allow_default_group must be true for pool persistent: a persistent runner registers in organization acme's Default group (runner_group_id applies to JIT runners only)`,
		`pools[2].repositories[0] "acme/lib" is not acme/shop, where the pool's runners register`,
		`pools[2].owners[0] must be empty for scope kind repo (the pool serves acme/shop)`,
	}},
	{"names and the order of pools", `[{"name":"wide","labels":["self-hosted","linux","gpu"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3},
	  {"name":"narrow","labels":[" Self-Hosted","linux"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3},
	  {"name":"wide","labels":["other"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3}]`, []string{
		`pools[1].labels: every job these labels take goes to pools[0] (wide) first, whose labels include them all; list the pool with fewer labels first`,
		`pools[2].name: "wide" is also the name of pools[0]`,
	}},
}

// Alone, a pool's field paths have no pools[i] prefix.
func TestValidateMessagesOfAPoolAlone(t *testing.T) {
	p := Pool{Name: "(unnamed)", Labels: []string{""}, Scope: Scope{Repo: "acme/shop"}, Owners: []string{"acme"}, MinIdle: 99}
	p.ApplyDefaults()
	assert.Equal(t, strings.Join([]string{"invalid runner pools configuration:",
		`name must be 1 to 39 lower-case letters, digits and dashes, starting with a letter or digit (got "(unnamed)")`,
		`labels[0] is empty`,
		`owners[0] must be empty for scope kind repo (the pool serves acme/shop)`,
		`min_idle (99) must not exceed max_machines (10)`,
	}, "\n- "), p.Validate().Error())
}
