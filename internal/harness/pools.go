package harness

import (
	"encoding/json"
	"path/filepath"
	"strconv"
)

// FakeRunnerPool is one organization runner pool whose runners are the
// fakerunner stand-in (internal/testenv/fakerunner): it claims a job from
// the GitHub double and reports it to the webhook server, as a runner would.
type FakeRunnerPool struct {
	Name, Org, Repo       string
	Labels                []string
	VCPU                  float64
	MemoryMiB, StorageGiB int
	Autosleep             string
	MinIdle, MaxMachines  int
	PickupTimeout         string
	// Retries, when set, is how often a runner retries a webhook delivery.
	Retries int
}

// FakeRunnerPools registers p's organization and repository with the
// GitHub double and returns RUNNER_POOLS for p (for Options.Pools).
func (h *Harness) FakeRunnerPools(p FakeRunnerPool) (string, error) {
	h.GH.AddOrg(p.Org)
	h.GH.AddRepo(p.Org, p.Repo)
	runner := []string{filepath.Join(h.Bins, "fakerunner"), "-github", h.GH.URL(), "-webhook", h.WebhookURL,
		"-secret", Secret, "-wait", "60s"}
	if p.Retries > 0 {
		runner = append(runner, "-retries", strconv.Itoa(p.Retries))
	}
	b, err := json.Marshal(map[string]any{"pools": []any{map[string]any{
		"name": p.Name, "labels": p.Labels, "scope": map[string]any{"kind": "org", "org": p.Org},
		"machine":  map[string]any{"vcpu": p.VCPU, "memory_mib": p.MemoryMiB, "storage_gib": p.StorageGiB, "autosleep": p.Autosleep},
		"min_idle": p.MinIdle, "max_machines": p.MaxMachines,
		"install":        map[string]any{"run": `mkdir -p "$HOME/actions-runner"`},
		"runner_command": runner, "pickup_timeout": p.PickupTimeout,
	}}})
	return string(b), err
}
