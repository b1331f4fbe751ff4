package pools

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/previewspec"
)

const exampleYAML = `
pools:
  - name: linux
    labels: [self-hosted, linux, x64]
    scope: {kind: org, org: acme}
    repositories: [acme/shop, acme/lib]
    runner_group_id: 7
    min_idle: 2
    max_machines: 8
    setup:
      - {name: toolchain, run: "apt-get install -y build-essential"}
    prewarm:
      - {cron: "45 8 * * MON-FRI", count: 4}
  - name: gpu
    labels: [self-hosted, linux, gpu]
    scope: {repo: acme/ml}
    machine: {vcpu: 16, memory_mib: 65536, storage_gib: 200, autosleep: 10m}
    mode: persistent
    runner_version: 2.320.1
    pickup_timeout: 5m
    lease_check_every: 10s
    max_attempts: 2
    runner_group_id: 4
    install: {command: [/opt/install-runner.sh]}
    runner_command: [/opt/run.sh]
`

func TestParseYAMLWithDefaults(t *testing.T) {
	c, err := Parse([]byte(exampleYAML))
	require.NoError(t, err)
	require.Equal(t, []string{"linux", "gpu"}, c.Names())

	linux := c.Get("linux")
	require.NotNil(t, linux)
	assert.Equal(t, Scope{Kind: ScopeOrg, Org: "acme"}, linux.Scope)
	assert.Equal(t, Machine{VCPU: DefaultVCPU, MemoryMiB: DefaultMemoryMiB, StorageGiB: DefaultStorageGiB, Autosleep: DefaultAutosleep}, linux.Machine)
	assert.Equal(t, 2, linux.MinIdle)
	assert.Equal(t, 8, linux.MaxMachines)
	assert.Equal(t, ModeJIT, linux.Mode)
	assert.Equal(t, DefaultRunnerVersion, linux.RunnerVersion)
	assert.EqualValues(t, 7, linux.RunnerGroupID)
	assert.Equal(t, []string{"acme/shop", "acme/lib"}, linux.Repositories)
	assert.False(t, linux.AllowPublic)
	assert.Equal(t, DefaultPickupTimeout, linux.PickupTimeout.D())
	assert.Equal(t, DefaultMaxAttempts, linux.MaxAttempts)
	assert.Equal(t, DefaultLeaseCheckEvery, linux.LeaseCheckEvery.D())
	assert.Equal(t, 5*time.Minute, linux.LeaseCheckInterval())
	assert.Equal(t, previewspec.DefaultStepTimeout, linux.Setup[0].Timeout.D())
	assert.Equal(t, []Prewarm{{Cron: "45 8 * * MON-FRI", Count: 4}}, linux.Prewarm)
	assert.Nil(t, linux.Install, "the runner activities own the install default")
	assert.Empty(t, linux.RunnerCommand)

	gpu := c.Get("gpu")
	require.NotNil(t, gpu)
	assert.Equal(t, Scope{Kind: ScopeRepo, Repo: "acme/ml"}, gpu.Scope, "kind inferred from repo")
	assert.Equal(t, Machine{VCPU: 16, MemoryMiB: 65536, StorageGiB: 200, Autosleep: "10m"}, gpu.Machine)
	assert.Equal(t, DefaultMaxMachines, gpu.MaxMachines)
	assert.Equal(t, ModePersistent, gpu.Mode)
	assert.Equal(t, "2.320.1", gpu.RunnerVersion)
	assert.Equal(t, 5*time.Minute, gpu.PickupTimeout.D())
	assert.Equal(t, 2, gpu.MaxAttempts)
	assert.Equal(t, 10*time.Second, gpu.LeaseCheckInterval())
	assert.EqualValues(t, 4, gpu.RunnerGroupID)
	assert.Equal(t, previewspec.DefaultStepTimeout, gpu.Install.Timeout.D())
	assert.Equal(t, []string{"/opt/run.sh"}, gpu.RunnerCommand)

	assert.Equal(t, "linux", c.Match([]string{"self-hosted", "Linux"}).Name)
	assert.Equal(t, "gpu", c.Match([]string{"self-hosted", "gpu"}).Name)
	assert.Nil(t, c.Match([]string{"ubuntu-latest"}))
	assert.Nil(t, c.Get("nope"))
}

// JSON (RUNNER_POOLS) is accepted as an object or as the bare list, and a
// parsed configuration survives a JSON round trip (it travels in workflow
// inputs).
func TestParseJSONForms(t *testing.T) {
	obj := `{"pools":[{"name":"ci","labels":["self-hosted"],"scope":{"kind":"org","org":"acme"},"repositories":["*"],"allow_default_group":true,"allow_public":true,"pickup_timeout":"90s"}]}`
	list := `[{"name":"ci","labels":["self-hosted"],"scope":{"kind":"org","org":"acme"},"repositories":["*"],"allow_default_group":true,"allow_public":true,"pickup_timeout":"90s"}]`
	a, err := Parse([]byte(obj))
	require.NoError(t, err)
	b, err := Parse([]byte(list))
	require.NoError(t, err)
	assert.Equal(t, a, b)
	assert.Equal(t, 90*time.Second, a.Pools[0].PickupTimeout.D())

	raw, err := json.Marshal(a)
	require.NoError(t, err)
	var back Config
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.Equal(t, *a, back)

	empty, err := Parse([]byte(`{"pools": []}`))
	require.NoError(t, err)
	assert.Empty(t, empty.Pools)
}

func TestInvalidConfigsListEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string // substrings, each of a separate problem
	}{
		{"name", `[{"name":"Bad_Name","labels":["x"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3}]`,
			[]string{"pools[0].name must be 1 to 39"}},
		{"long name", `[{"name":"` + strings.Repeat("a", 40) + `","labels":["x"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3}]`,
			[]string{"pools[0].name must be"}},
		{"duplicate names", `[{"name":"ci","labels":["a"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3},{"name":"ci","labels":["b"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3}]`,
			[]string{`pools[1].name: "ci" is also the name of pools[0]`}},
		{"labels", `[{"name":"ci","labels":[],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3},{"name":"c2","labels":["ok",""],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3}]`,
			[]string{"pools[0].labels must list", "pools[1].labels[1] is empty"}},
		{"shadowed", `[{"name":"wide","labels":["self-hosted","linux","gpu"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3},{"name":"narrow","labels":["Self-Hosted","linux"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3}]`,
			[]string{"pools[1].labels: every job these labels take goes to pools[0] (wide) first"}},
		{"scope missing", `[{"name":"ci","labels":["x"]}]`, []string{"pools[0].scope is required"}},
		{"scope both", `[{"name":"ci","labels":["x"],"scope":{"org":"a","repo":"a/b"}}]`, []string{"pools[0].scope.kind must say org or repo"}},
		{"scope kind", `[{"name":"ci","labels":["x"],"scope":{"kind":"enterprise","org":"a"}}]`, []string{`pools[0].scope.kind must be org or repo (got "enterprise")`}},
		{"org missing", `[{"name":"ci","labels":["x"],"scope":{"kind":"org"}}]`, []string{"pools[0].scope.org is required"}},
		{"org with repo", `[{"name":"ci","labels":["x"],"scope":{"kind":"org","org":"a","repo":"a/b"}}]`, []string{"pools[0].scope.repo must be empty"}},
		{"org login", `[{"name":"ci","labels":["x"],"scope":{"kind":"org","org":"a b"}}]`, []string{"pools[0].scope.org \"a b\" is not a GitHub organization login"}},
		{"repo form", `[{"name":"ci","labels":["x"],"scope":{"kind":"repo","repo":"acme"}}]`, []string{`pools[0].scope.repo must be owner/name (got "acme")`}},
		{"repo missing", `[{"name":"ci","labels":["x"],"scope":{"kind":"repo"}}]`, []string{"pools[0].scope.repo is required"}},
		{"machine", `[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"machine":{"vcpu":-1,"memory_mib":10,"storage_gib":-2,"autosleep":"soon"}}]`,
			[]string{"pools[0].machine.vcpu", "pools[0].machine.memory_mib", "pools[0].machine.storage_gib", "pools[0].machine.autosleep is invalid"}},
		{"bounds", `[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"min_idle":-1,"max_machines":-3}]`,
			[]string{"pools[0].min_idle must not be negative", "pools[0].max_machines must be at least 1"}},
		{"min above max", `[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"min_idle":5,"max_machines":4}]`,
			[]string{"pools[0].min_idle (5) must not exceed max_machines (4)"}},
		{"min above default max", `[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"min_idle":11}]`,
			[]string{"pools[0].min_idle (11) must not exceed max_machines (10)"}},
		{"mode and versions", `[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"allow_default_group":true,"mode":"ephemeral","runner_version":"latest","runner_group_id":-1,"max_attempts":11,"pickup_timeout":"2h"}]`,
			[]string{"pools[0].mode must be jit or persistent", "pools[0].runner_version", "pools[0].runner_group_id", "pools[0].max_attempts must be between 1 and 10", "pools[0].pickup_timeout must be between 1s and 1h"}},
		{"lease check", `[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"lease_check_every":"4s"},{"name":"cd","labels":["y"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"lease_check_every":"-1m"}]`,
			[]string{"pools[0].lease_check_every must be at least 5s (got 4s)", "pools[1].lease_check_every must be at least 5s"}},
		{"steps", `[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"setup":[{"name":"none"},{"run":"a","command":["b"]},{"command":[""]},{"run":"x","timeout":"7h"}],"install":{"name":"x"},"runner_command":[""]}]`,
			[]string{"pools[0].setup[0] needs run", "pools[0].setup[1] must give run or command, not both", "pools[0].setup[2].command[0] is empty",
				"pools[0].setup[3].timeout must be between 1s and 6h", "pools[0].install needs run", "pools[0].runner_command[0] is empty"}},
		{"prewarm", `[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"prewarm":[{"cron":"0 8 * *","count":1},{"cron":"0 8 * * MON","count":0},{"cron":"61 8 * * *","count":2}]}]`,
			[]string{"pools[0].prewarm[0].cron is invalid", "pools[0].prewarm[1].count must be at least 1", "pools[0].prewarm[2].cron is invalid"}},
		{"second pool", `[{"name":"ok","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3},{"name":"bad","labels":["y"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"mode":"x"}]`,
			[]string{"pools[1].mode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			require.Error(t, err)
			var inv *InvalidError
			require.True(t, errors.As(err, &inv), "%v", err)
			assert.Len(t, inv.Problems, len(tc.want), "%v", err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.True(t, strings.HasPrefix(err.Error(), "invalid runner pools configuration:\n- "), err.Error())
		})
	}
}

func TestRejectsUnknownFieldsAndJunk(t *testing.T) {
	for name, in := range map[string]string{
		"unknown field":      `{"pools":[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"min_idel":1}]}`,
		"unknown top level":  `{"pool":[]}`,
		"not yaml":           "pools: [\n",
		"scalar labels":      `{"pools":[{"name":"ci","labels":"x","scope":{"org":"a"},"owners":["a"],"runner_group_id":3}]}`,
		"bad duration":       `{"pools":[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"pickup_timeout":"soon"}]}`,
		"empty":              "  \n",
		"too large":          strings.Repeat(" ", MaxSize+1),
		"unknown step field": `[{"name":"ci","labels":["x"],"scope":{"org":"a"},"owners":["a"],"runner_group_id":3,"setup":[{"shell":"x"}]}]`,
	} {
		_, err := Parse([]byte(in))
		assert.Error(t, err, name)
	}
}

func TestLoadFrom(t *testing.T) {
	c, err := LoadFrom("", "  ")
	require.NoError(t, err)
	assert.Empty(t, c.Pools, "neither set: no pools")
	assert.Nil(t, c.Match([]string{"self-hosted"}))

	dir := t.TempDir()
	file := filepath.Join(dir, "pools.yml")
	require.NoError(t, os.WriteFile(file, []byte(exampleYAML), 0o600))
	c, err = LoadFrom(file, "")
	require.NoError(t, err)
	assert.Equal(t, []string{"linux", "gpu"}, c.Names())

	c, err = LoadFrom("", `[{"name":"ci","labels":["self-hosted"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3}]`)
	require.NoError(t, err)
	assert.Equal(t, []string{"ci"}, c.Names())

	_, err = LoadFrom(file, `{"pools":[]}`)
	assert.ErrorContains(t, err, "set RUNNER_POOLS_FILE or RUNNER_POOLS, not both")

	_, err = LoadFrom(filepath.Join(dir, "missing.yml"), "")
	assert.ErrorContains(t, err, "RUNNER_POOLS_FILE=")
	assert.ErrorContains(t, err, "missing.yml")

	_, err = LoadFrom("", `[{"name":"ci"}]`)
	assert.ErrorContains(t, err, "RUNNER_POOLS: invalid runner pools configuration")
	assert.ErrorContains(t, err, "pools[0].labels")

	bad := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("pools:\n  - name: ci\n    labels: [x]\n"), 0o600))
	_, err = LoadFrom(bad, "")
	assert.ErrorContains(t, err, "RUNNER_POOLS_FILE="+bad)
	assert.ErrorContains(t, err, "pools[0].scope is required")
}

// A pool without lease_check_every (from an older worker, or recorded in
// a workflow history) marshals as before, so its configuration
// fingerprint does not change; it checks every DefaultLeaseCheckEvery.
func TestLeaseCheckEveryUnsetKeepsTheEncoding(t *testing.T) {
	raw, err := json.Marshal(Pool{Name: "ci"})
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "lease_check_every")
	var p Pool
	require.NoError(t, json.Unmarshal(raw, &p))
	assert.Equal(t, DefaultLeaseCheckEvery, p.LeaseCheckInterval())
	p.LeaseCheckEvery = previewspec.Duration(10 * time.Second)
	raw, err = json.Marshal(p)
	require.NoError(t, err)
	assert.Contains(t, string(raw), `"lease_check_every":"10s"`)
}

func TestPoolValidateAlone(t *testing.T) {
	p := Pool{Name: "ci", Labels: []string{"self-hosted"}, Scope: Scope{Org: "acme"}, Owners: []string{"acme"}, RunnerGroupID: 3}
	p.ApplyDefaults()
	require.NoError(t, p.Validate())
	p.MinIdle = 99
	assert.ErrorContains(t, p.Validate(), "\n- min_idle (99) must not exceed max_machines (10)")
}

func TestValidateCron(t *testing.T) {
	for _, ok := range []string{
		"* * * * *", "0 8 * * 1-5", "45 8 * * MON-FRI", "*/15 8-18 * * *", "0 0 1 JAN *", "0,30 6,12,18 * * sun",
		"0 9 1-7 * 1", "5-50/5 * * * 7", "0 0 31 dec sat",
	} {
		assert.NoError(t, ValidateCron(ok), ok)
	}
	for _, bad := range []string{
		"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
		"*/0 * * * *", "5-1 * * * *", "a * * * *", "1,,2 * * * *", "-1 * * * *", "+5 * * * *", "@hourly", "* * * FOO *",
	} {
		assert.Error(t, ValidateCron(bad), bad)
	}
}

// A pool says which repositories it serves and where its runners land:
// an organization pool without a list, or in the Default runner group
// without allow_default_group, is refused at startup, naming the pool and
// the field.
func TestScopeIsRequiredAndFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{"no repositories at org scope", `[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"runner_group_id":3}]`,
			[]string{`pools[0].repositories is required: pool ci must list the repositories (owner/name) or owners whose jobs it takes, or repositories: ["*"]`}},
		{"default group at org scope", `[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"owners":["acme"]}]`,
			[]string{"pools[0].runner_group_id must name the runner group of pool ci: the Default group (1) of organization acme is open to all its repositories (set allow_default_group: true"}},
		{"explicit default group at org scope", `[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":1}]`,
			[]string{"pools[0].runner_group_id must name the runner group of pool ci"}},
		{"persistent org pool lands in Default", `[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"owners":["acme"],"runner_group_id":3,"mode":"persistent"}]`,
			[]string{"pools[0].allow_default_group must be true for pool ci: a persistent runner registers in organization acme's Default group"}},
		{"repository of another organization", `[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"repositories":["acme/shop","evil/shop"],"runner_group_id":3}]`,
			[]string{`pools[0].repositories[1] "evil/shop" is not in organization acme`}},
		{"bad repository", `[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"repositories":["shop"],"runner_group_id":3}]`,
			[]string{`pools[0].repositories[0] must be owner/name or "*" (got "shop")`}},
		{"star not alone", `[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"repositories":["acme/shop","*"],"runner_group_id":3}]`,
			[]string{`pools[0].repositories[1] "*" takes every repository: list it alone`}},
		{"other owner", `[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"owners":["evil"],"runner_group_id":3}]`,
			[]string{`pools[0].owners[0] "evil" is not organization acme`}},
		{"repository pool lists another", `[{"name":"ci","labels":["x"],"scope":{"repo":"acme/shop"},"repositories":["acme/lib"]}]`,
			[]string{`pools[0].repositories[0] "acme/lib" is not acme/shop`}},
		{"repository pool with owners", `[{"name":"ci","labels":["x"],"scope":{"repo":"acme/shop"},"owners":["acme"]}]`,
			[]string{"pools[0].owners[0] must be empty for scope kind repo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			var inv *InvalidError
			require.True(t, errors.As(err, &inv), "%v", err)
			assert.Len(t, inv.Problems, len(tc.want), "%v", err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}

	// Accepted: explicit switches, and a repository pool (its runners
	// register in one repository; its runner group is that repository's).
	for _, ok := range []string{
		`[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"repositories":["*"],"allow_default_group":true}]`,
		`[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"owners":["Acme"],"runner_group_id":1,"allow_default_group":true}]`,
		`[{"name":"ci","labels":["x"],"scope":{"org":"acme"},"owners":["acme"],"mode":"persistent","allow_default_group":true}]`,
		`[{"name":"ci","labels":["x"],"scope":{"repo":"acme/shop"}}]`,
		`[{"name":"ci","labels":["x"],"scope":{"repo":"acme/shop"},"repositories":["Acme/Shop"]}]`,
	} {
		_, err := Parse([]byte(ok))
		assert.NoError(t, err, ok)
	}
}

func TestServes(t *testing.T) {
	c, err := Parse([]byte(`
pools:
  - {name: listed, labels: [a], scope: {org: acme}, repositories: [acme/shop, acme/lib], runner_group_id: 3}
  - {name: owner, labels: [b], scope: {org: acme}, owners: [acme], runner_group_id: 3}
  - {name: any, labels: [c], scope: {org: acme}, repositories: ["*"], runner_group_id: 3}
  - {name: repo, labels: [d], scope: {repo: bob/lab}}
`))
	require.NoError(t, err)
	for _, tc := range []struct {
		pool, owner, repo string
		want              bool
	}{
		{"listed", "acme", "shop", true},
		{"listed", "ACME", "Shop", true}, // GitHub names compare case-insensitively
		{"listed", "acme", "other", false},
		{"listed", "evil", "shop", false},
		{"owner", "acme", "anything", true},
		{"owner", "acmex", "shop", false},
		{"any", "acme", "anything", true},
		{"any", "evil", "shop", false}, // "*" is every repository of the scope, no more
		{"repo", "bob", "lab", true},
		{"repo", "bob", "other", false},
		{"repo", "", "", false},
	} {
		assert.Equal(t, tc.want, c.Get(tc.pool).Serves(tc.owner, tc.repo), "%s serves %s/%s", tc.pool, tc.owner, tc.repo)
	}
}

// The example pool file in docs/runners.md is a valid configuration.
func TestDocsExampleParses(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "runners.md"))
	require.NoError(t, err)
	text := string(raw)
	i := strings.Index(text, "```yaml\npools:\n")
	require.GreaterOrEqual(t, i, 0, "docs/runners.md has the example pool file")
	text = text[i+len("```yaml\n"):]
	text = text[:strings.Index(text, "```")]
	c, err := Parse([]byte(text))
	require.NoError(t, err)
	p := c.Pools[0]
	assert.True(t, p.Serves("acme", "shop"))
	assert.False(t, p.Serves("acme", "other"))
	assert.EqualValues(t, 7, p.RunnerGroupID)
}

func TestIsolationDefaultsAndPersistentRefusal(t *testing.T) {
	c, err := Parse([]byte(exampleYAML))
	require.NoError(t, err)
	assert.Equal(t, IsolationPerRepo, c.Get("linux").Isolation, "a jit pool keeps a machine to one repository by default")
	assert.Equal(t, IsolationShared, c.Get("gpu").Isolation, "a persistent runner takes any job of its pool")
	assert.Equal(t, IsolationPerRepo, Pool{}.IsolationMode(), "a configuration recorded before isolation modes")
	assert.Equal(t, IsolationShared, Pool{Mode: ModePersistent}.IsolationMode())

	base := func(mode, iso string) Pool {
		p := Pool{Name: "ci", Labels: []string{"self-hosted"}, Scope: Scope{Repo: "acme/shop"}, Mode: mode, Isolation: iso}
		p.ApplyDefaults()
		return p
	}
	for _, iso := range []string{IsolationPerRepo, IsolationShared, IsolationFresh} {
		p := base(ModeJIT, iso)
		assert.NoError(t, p.Validate(), iso)
		assert.Equal(t, iso, p.IsolationMode())
	}
	for _, iso := range []string{IsolationPerRepo, IsolationFresh} {
		p := base(ModePersistent, iso)
		assert.ErrorContains(t, p.Validate(), "isolation must be shared for persistent pool ci (got \""+iso+"\")")
	}
	p := base(ModePersistent, IsolationShared)
	assert.NoError(t, p.Validate())
	p = base(ModeJIT, "per-org")
	assert.ErrorContains(t, p.Validate(), `isolation must be per-repo, shared or fresh (got "per-org")`)

	_, err = Parse([]byte(`[{name: ci, labels: [self-hosted], scope: {repo: acme/shop}, mode: persistent, isolation: per-repo}]`))
	assert.ErrorContains(t, err, "pools[0].isolation must be shared")
}

func TestCachesMustBeDirectoriesOfTheRunnerHome(t *testing.T) {
	p := Pool{Name: "ci", Labels: []string{"self-hosted"}, Scope: Scope{Org: "acme"}, Owners: []string{"acme"}, RunnerGroupID: 3,
		Caches: []string{"~/.cargo/registry", "~/.npm/", "~/.cache/sccache"}}
	p.ApplyDefaults()
	require.NoError(t, p.Validate())
	for _, rel := range []string{".cargo/registry", ".npm", ".cache/sccache"} {
		got, err := CacheDir("~/" + rel)
		require.NoError(t, err)
		assert.Equal(t, rel, got)
	}
	for c, want := range map[string]string{
		"/etc":                   "must be a directory of the runner's home",
		".npm":                   "must be a directory of the runner's home",
		"~/":                     "is not a plain directory name",
		"~/../root":              "must be a clean path below the home",
		"~/.cache/../../etc":     "must be a clean path below the home",
		"~/a//b":                 "must be a clean path below the home",
		"~/.cache/*":             "is not a plain directory name",
		"~/a\nb":                 "is not a plain directory name",
		"~/actions-runner/_work": "is the runner's own directory",
		"~/.drydock":             "is the runner's own directory",
		"~/tmp":                  "is the runner's scratch space",
		"~/.drydock-caches-held": "is the runner's scratch space",
	} {
		p.Caches = []string{c}
		err := p.Validate()
		require.Error(t, err, c)
		assert.Contains(t, err.Error(), "caches[0] ", c)
		assert.Contains(t, err.Error(), want, c)
	}
}
