package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
)

// The cost of isolation: the first two hours of the cost scenario's
// seeded workday (stand-up burst included, same compression), its jobs
// spread over three repositories of one organization (seeded: 50% api, 30%
// web, 20% docs), run twice on the same pool shape, once with isolation
// per-repo and once shared. Reported: the cache-affinity hit rate (a job
// ran on a machine whose previous job was of its repository, as GitHub's
// side saw it: the runner's machine at in_progress), never-used machines,
// machines whose previous job was another repository's, and the awake
// vCPU-seconds the emulator accounted.
const (
	isoPool = "iso"
	isoSpan = 2 * time.Hour
)

var isoRepos = []struct {
	name   string
	weight float64
}{{"api", 0.5}, {"web", 0.3}, {"docs", 0.2}}

func init() {
	register(Scenario{Order: 7, Name: "isolation", Title: "7. Cost of isolation: per-repo vs shared, one trace over three repositories", Run: isolationScenario})
}

// isoRun is one mode's outcome.
type isoRun struct {
	jobs, same, fresh, other, completed, machines int
	awakeVCPU                                     float64
}

func isolationScenario(ctx context.Context, e *Env) ([]Row, error) {
	span := time.Duration(min(1, e.Scale) * float64(isoSpan))
	day := workday(costSeed, span)
	if len(day) == 0 {
		return nil, fmt.Errorf("the first %s of the workday has no jobs", span)
	}
	rng := rand.New(rand.NewPCG(costSeed, 0x150))
	repos := make([]string, len(day))
	for i := range day {
		x := rng.Float64()
		for _, r := range isoRepos {
			repos[i] = r.name
			if x < r.weight {
				break
			}
			x -= r.weight
		}
	}
	runs := map[string]isoRun{}
	for _, mode := range []string{pools.IsolationPerRepo, pools.IsolationShared} {
		r, err := isoDay(ctx, e, mode, day, repos)
		if err != nil {
			return nil, fmt.Errorf("isolation %s: %w", mode, err)
		}
		runs[mode] = r
	}
	pr, sh := runs[pools.IsolationPerRepo], runs[pools.IsolationShared]
	rate := func(r isoRun) float64 { return 100 * float64(r.same) / float64(max(1, r.jobs)) }
	desc := fmt.Sprintf("%d jobs over the first %s of the cost workday, compressed %d×, over 3 repositories; pool of at most %d machines, min_idle 2",
		len(day), span, costCompression, costMachines)
	return []Row{
		{Metric: "cache-affinity hit rate, per-repo (baseline: shared)", Value: rate(pr), Unit: "%", Baseline: F(rate(sh)),
			Note: desc + "; a hit: the job's machine last ran its repository"},
		{Metric: "jobs on a machine another repository used last, per-repo (baseline: shared)", Value: float64(pr.other), Baseline: F(float64(sh.other)),
			Note: "per-repo: only where GitHub handed a runner another repository's queued job (the machine is deleted after)"},
		{Metric: "jobs on a never-used machine, per-repo (baseline: shared)", Value: float64(pr.fresh), Baseline: F(float64(sh.fresh))},
		{Metric: "awake vCPU-seconds, per-repo (baseline: shared)", Value: pr.awakeVCPU, Unit: "vCPU·s", Baseline: F(sh.awakeVCPU), Ratio: F(pr.awakeVCPU / max(1, sh.awakeVCPU)),
			Note: fmt.Sprintf("machines created: %d per-repo, %d shared", pr.machines, sh.machines)},
		{Metric: fmt.Sprintf("jobs completed per-repo / shared (of %d)", len(day)), Value: float64(pr.completed), Baseline: F(float64(sh.completed))},
	}, nil
}

// isoDay runs the trace on a fresh stack with the pool's isolation mode.
func isoDay(ctx context.Context, e *Env, mode string, day []costJob, repos []string) (isoRun, error) {
	h, err := startIsoStack(ctx, e, mode)
	if err != nil {
		return isoRun{}, err
	}
	defer h.Close()
	clock := newJobClock(h)
	aff := trackAffinity(h)
	h.Emu.ResetStats()
	start := time.Now()
	ids := jobIDs(len(day))
	if err := replayDay(ctx, start, day, func(i int, j costJob) error {
		return queueRepoJob(ctx, h, ids[i], repos[i], compress(j.dur))
	}); err != nil {
		return isoRun{}, err
	}
	if _, err := clock.waitCompleted(ctx, ids, 10*time.Minute); err != nil {
		return isoRun{}, err
	}
	if err := waitPoolAsleep(ctx, h, isoPool, 1, 2*time.Minute); err != nil {
		return isoRun{}, err
	}
	st := h.Emu.Stats()
	completed, err := waitRunnerJobs(ctx, h, ids, 5*time.Minute)
	if err != nil {
		return isoRun{}, err
	}
	run := aff.result()
	run.jobs, run.completed, run.awakeVCPU, run.machines = len(day), completed, st.AwakeVCPUSeconds, int(st.Creates)
	e.Log.Info("isolation day done", "mode", mode, "jobs", run.jobs, "same_repo", run.same, "fresh", run.fresh, "other", run.other,
		"awake_vcpu_s", run.awakeVCPU, "creates", run.machines)
	return run, nil
}

// startIsoStack starts a Drydock whose one pool serves the isolation
// repositories in the given isolation mode.
func startIsoStack(ctx context.Context, e *Env, mode string) (*harness.Harness, error) {
	full := make([]string, len(isoRepos))
	for i, r := range isoRepos {
		full[i] = runnerOrg + "/" + r.name
	}
	return e.Start(ctx, harness.Options{
		Emulator: emulator.Config{BootDelay: costBoot, WakeDelay: costWake, SleepDelay: costSleep},
		Pools: func(h *harness.Harness) (string, error) {
			return h.FakeRunnerPools(harness.FakeRunnerPool{
				Name: isoPool, Org: runnerOrg, Repo: runnerRepo, Labels: runnerLabels, Repositories: full, Isolation: mode,
				VCPU: costVCPU, MemoryMiB: 2048, StorageGiB: 10, Autosleep: "2m", MinIdle: 2, MaxMachines: costMachines, PickupTimeout: "30s",
			})
		},
	})
}

// affinity counts, as jobs go in progress, whether each ran on a machine
// that last ran its repository, another repository, or nothing yet.
type affinity struct {
	mu                 sync.Mutex
	last               map[string]string // machine -> repository of its last job
	same, other, fresh int
}

func trackAffinity(h *harness.Harness) *affinity {
	a := &affinity{last: map[string]string{}}
	h.GH.OnJobEvent(func(action string, j githubtest.Job) {
		if action != githubtest.JobInProgress {
			return
		}
		machine := ""
		if r, ok := h.GH.RunnerByID(j.RunnerID); ok {
			machine = r.MachineID
		}
		a.record(machine, strings.ToLower(j.Repo))
	})
	return a
}

func (a *affinity) record(machine, repo string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev, seen := a.last[machine]
	switch {
	case machine == "" || !seen:
		a.fresh++
	case prev == repo:
		a.same++
	default:
		a.other++
	}
	if machine != "" {
		a.last[machine] = repo
	}
}

// result is the counts so far as an isoRun.
func (a *affinity) result() isoRun {
	a.mu.Lock()
	defer a.mu.Unlock()
	return isoRun{same: a.same, other: a.other, fresh: a.fresh}
}

// queueRepoJob is queueJob for a job of runnerOrg/repo.
func queueRepoJob(ctx context.Context, h *harness.Harness, id int64, repo string, d time.Duration) error {
	h.GH.AddJob(runnerOrg, repo, githubtest.Job{ID: id, RunID: id * 10, Name: fmt.Sprintf("build-%d", id), Labels: runnerLabels, Duration: d})
	body, err := h.WorkflowJob("queued", ghfixture.Job{
		ID: id, RunID: id * 10, Name: fmt.Sprintf("build-%d", id), Owner: runnerOrg, Repo: repo, Org: runnerOrg, Labels: runnerLabels,
	})
	if err != nil {
		return err
	}
	code, err := h.Deliver(ctx, "workflow_job", fmt.Sprintf("queued-%d", id), body)
	if err == nil && code != http.StatusAccepted {
		err = fmt.Errorf("queued delivery of job %d: HTTP %d", id, code)
	}
	return err
}
