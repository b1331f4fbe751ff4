package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/internal/testing/harness"
)

// The synthetic CI workday (real time; run compressed costCompression times):
//
//   - 09:00 to 17:00, 8 hours, compressed into 2 minutes (1 real hour = 15 s).
//   - Background arrivals, Poisson, per hour: 12 from 09:00, 20 from 10:00,
//     6 over lunch (12:00 to 13:00), 20 from 13:00, 14 from 16:00.
//   - Bursts, spread uniformly over a window: 15 jobs in the 5 minutes after
//     the 09:30 stand-up, 12 in the 5 minutes after 13:15 (back from
//     lunch), 20 in the 10 minutes from 16:45 (pushes before leaving).
//   - Job durations: log-normal, median 4 minutes, σ 0.6 (mean ≈ 4.8 min),
//     clipped to 1 to 20 minutes.
//   - Seeded (costSeed): every run replays the same day, about 180 jobs.
//
// -scale s runs the first s × 8 hours of that day at the same compression
// (0.1: 09:00 to 09:48, stand-up burst included), so the load keeps its
// shape. Drydock's fixed costs are not compressed (a wake takes the
// emulator's 300 ms, a 72-second stretch of the real day): the awake time
// it pays around each job is overstated 240-fold against a real day, so the
// ratio is an upper bound.
const (
	costSeed        = 20261124
	costDay         = 8 * time.Hour
	costCompression = 240
	costPool        = "ci"
	costMachines    = 8
	costVCPU        = 4
)

type costRate struct {
	from, to time.Duration // since 09:00
	perHour  float64
}

type costBurst struct {
	at, width time.Duration
	jobs      int
}

var (
	costRates = []costRate{
		{0, time.Hour, 12},
		{time.Hour, 3 * time.Hour, 20},
		{3 * time.Hour, 4 * time.Hour, 6},
		{4 * time.Hour, 7 * time.Hour, 20},
		{7 * time.Hour, 8 * time.Hour, 14},
	}
	costBursts = []costBurst{
		{30 * time.Minute, 5 * time.Minute, 15},
		{4*time.Hour + 15*time.Minute, 5 * time.Minute, 12},
		{7*time.Hour + 45*time.Minute, 10 * time.Minute, 20},
	}
)

// costJob is one job of the day, in real time since 09:00.
type costJob struct {
	at, dur time.Duration
}

// workday draws the day's jobs up to `until` (real time), oldest first.
func workday(seed uint64, until time.Duration) []costJob {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	duration := func() time.Duration {
		minutes := math.Exp(math.Log(4) + 0.6*rng.NormFloat64())
		return time.Duration(min(20, max(1, minutes)) * float64(time.Minute))
	}
	var jobs []costJob
	for _, r := range costRates {
		t := r.from
		for {
			t += time.Duration(rng.ExpFloat64() / r.perHour * float64(time.Hour))
			if t >= r.to {
				break
			}
			jobs = append(jobs, costJob{at: t, dur: duration()})
		}
	}
	for _, b := range costBursts {
		for range b.jobs {
			jobs = append(jobs, costJob{at: b.at + time.Duration(rng.Float64()*float64(b.width)), dur: duration()})
		}
	}
	jobs = slices.DeleteFunc(jobs, func(j costJob) bool { return j.at >= until })
	slices.SortStableFunc(jobs, func(a, b costJob) int { return int(a.at - b.at) })
	return jobs
}

func compress(d time.Duration) time.Duration { return d / costCompression }

func init() {
	register(Scenario{Order: 6, Name: "cost", Title: "6. Cost: a synthetic CI workday on a pool", Run: costScenario})
}

// costScenario runs the synthetic workday on a pool of up to costMachines
// machines (min_idle 2, autosleep 2m; the pool also puts each machine to
// sleep as soon as its job is done) and compares the awake vCPU-seconds the
// emulator accounted with the same pool always on: as many machines as the
// pool provisioned, awake for the whole run. It also reports each job's
// queued→running latency, from the queued delivery to the job going in
// progress on GitHub's side (the double's job event).
func costScenario(ctx context.Context, e *Env) ([]Row, error) {
	h, err := e.Start(ctx, harness.Options{
		Emulator: emulator.Config{BootDelay: costBoot, WakeDelay: costWake, SleepDelay: costSleep},
		Pools: runnerPools(benchPool{Name: costPool, VCPU: costVCPU, MinIdle: 2, MaxMachines: costMachines,
			Autosleep: "2m", PickupTimeout: "30s"}),
	})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	clock := newJobClock(h)
	if err := startCostPool(ctx, h); err != nil {
		return nil, err
	}
	span := time.Duration(min(1, e.Scale) * float64(costDay))
	day := workday(costSeed, span)
	if len(day) == 0 {
		return nil, fmt.Errorf("the first %s of the workday has no jobs", span)
	}
	e.Log.Info("workday", "jobs", len(day), "span", span, "runs_for", compress(span))
	run, err := runWorkday(ctx, e, h, clock, day)
	if err != nil {
		return nil, err
	}
	spaced, err := spacedOverhead(ctx, e, h)
	if err != nil {
		return nil, err
	}
	return run.rows(span, spaced), nil
}

// The emulator's platform delays in the cost scenario: a machine boots in
// 1 s, wakes in 300 ms and goes to sleep in 100 ms, all of it awake (billed)
// time that no orchestration can shorten.
const (
	costBoot  = time.Second
	costWake  = 300 * time.Millisecond
	costSleep = 100 * time.Millisecond
)

// startCostPool readies the pool before the day: a first job starts it,
// the pool provisions its min_idle machines, and the day starts with them
// asleep.
func startCostPool(ctx context.Context, h *harness.Harness) error {
	if _, _, err := queueJob(ctx, h, 1, time.Second); err != nil {
		return err
	}
	if _, err := waitRunnerJobs(ctx, h, []int64{1}, 3*time.Minute); err != nil {
		return fmt.Errorf("first job: %w", err)
	}
	return waitPoolAsleep(ctx, h, costPool, 2, 2*time.Minute)
}

// workdayRun is what a replayed workday measured.
type workdayRun struct {
	day       []costJob
	st        emulator.Stats // from the first delivery until the pool was asleep again
	wall      time.Duration  // first delivery to the last job's completion (at least the compressed span)
	completed int
	latencies []time.Duration // queued → in progress, of the jobs that went in progress
	missing   int             // jobs that never went in progress
}

// runWorkday replays day (compressed) on the pool and measures it: the
// emulator's accounting runs until every machine is asleep again, whatever
// that takes after the last job.
func runWorkday(ctx context.Context, e *Env, h *harness.Harness, clock *jobClock, day []costJob) (workdayRun, error) {
	h.Emu.ResetStats()
	start := time.Now()
	queued := make([]time.Time, len(day))
	ids := jobIDs(len(day))
	if err := replayDay(ctx, start, day, func(i int, j costJob) error {
		queued[i] = time.Now() // each goroutine its own element; read after replayDay
		_, _, err := queueJob(ctx, h, ids[i], compress(j.dur))
		return err
	}); err != nil {
		return workdayRun{}, err
	}
	last, err := clock.waitCompleted(ctx, ids, 10*time.Minute)
	if err != nil {
		return workdayRun{}, err
	}
	if err := waitPoolAsleep(ctx, h, costPool, 1, 2*time.Minute); err != nil {
		return workdayRun{}, err
	}
	run := workdayRun{day: day, st: h.Emu.Stats(), wall: last.Sub(start)}
	e.Log.Info("workday done", "last_job_done_after", run.wall, "all_asleep_after", time.Since(start),
		"awake_vcpu_s", run.st.AwakeVCPUSeconds, "running_vcpu_s", run.st.RunningVCPUSeconds,
		"machines", len(run.st.Machines), "wakes", run.st.Wakes, "creates", run.st.Creates)
	if run.completed, err = waitRunnerJobs(ctx, h, ids, 5*time.Minute); err != nil {
		return workdayRun{}, err
	}
	for i, id := range ids {
		if t, ok := clock.started(id); ok {
			run.latencies = append(run.latencies, t.Sub(queued[i]))
		} else {
			run.missing++
		}
	}
	return run, nil
}

// rows are the scenario's rows: the awake vCPU-seconds against the same
// pool always on, the jobs' own, what was awake beyond them per job (the
// compressed day and the spaced jobs), completions and latencies.
func (r workdayRun) rows(span time.Duration, spaced awakeBeyond) []Row {
	wall := max(compress(span), r.wall)
	machines, vcpus := 0, 0.0
	for _, m := range r.st.Machines {
		if m.Phase != "destroyed" {
			machines++
			vcpus += m.VCPU
		}
	}
	alwaysOn := vcpus * wall.Seconds()
	n := len(r.day)
	ran := 0.0
	for _, j := range r.day {
		ran += compress(j.dur).Seconds() * costVCPU
	}
	desc := fmt.Sprintf("%d jobs over %s of a seeded workday (bursts at stand-up, after lunch, end of day; Poisson between) compressed %d×, done in %s",
		n, span, costCompression, wall.Round(time.Second))
	rows := []Row{
		{Metric: "awake vCPU-seconds (emulator accounting)", Value: r.st.AwakeVCPUSeconds, Unit: "vCPU·s", Baseline: F(alwaysOn), Ratio: F(r.st.AwakeVCPUSeconds / alwaysOn),
			Note: fmt.Sprintf("%s; baseline: the pool's %d machines × %d vCPU always on for the same time", desc, machines, costVCPU)},
		{Metric: "vCPU-seconds the jobs themselves ran", Value: ran, Unit: "vCPU·s", Note: fmt.Sprintf("their durations × %d vCPU", costVCPU)},
	}
	compressed := beyondPerJob(r.st, ran, n)
	rows = append(rows, costBeyondRows(n, compressed, r.st.Wakes, spaced, ran, vcpus*span.Seconds())...)
	return append(rows, []Row{
		{Metric: fmt.Sprintf("jobs completed (of %d)", n), Value: float64(r.completed), Goal: fmt.Sprint(n), Met: B(r.completed == n)},
		{Metric: "queued→running p50", Value: MS(quantile(r.latencies, 0.5)), Unit: "ms",
			Note: fmt.Sprintf("queued delivery sent → job in progress on GitHub's side; pool of at most %d machines, so bursts queue", costMachines)},
		{Metric: "queued→running p90", Value: MS(quantile(r.latencies, 0.9)), Unit: "ms"},
		{Metric: "queued→running p99", Value: MS(quantile(r.latencies, 0.99)), Unit: "ms",
			Note: fmt.Sprintf("max %.0f ms; %d jobs never went in progress", MS(quantile(r.latencies, 1)), r.missing)},
	}...)
}

// jobClock records when the GitHub double saw each job go in progress and
// complete (its own timestamps are truncated to the second).
type jobClock struct {
	mu                    sync.Mutex
	inProgress, completed map[int64]time.Time
}

func newJobClock(h *harness.Harness) *jobClock {
	c := &jobClock{inProgress: map[int64]time.Time{}, completed: map[int64]time.Time{}}
	h.GH.OnJobEvent(func(action string, job githubtest.Job) {
		now := time.Now()
		c.mu.Lock()
		defer c.mu.Unlock()
		switch action {
		case githubtest.JobInProgress:
			c.inProgress[job.ID] = now
		case githubtest.JobCompleted:
			c.completed[job.ID] = now
		}
	})
	return c
}

// waitCompleted waits until every job of ids has completed and returns
// when the last one did.
func (c *jobClock) waitCompleted(ctx context.Context, ids []int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		var last time.Time
		done := 0
		c.mu.Lock()
		for _, id := range ids {
			if t, ok := c.completed[id]; ok {
				done++
				if t.After(last) {
					last = t
				}
			}
		}
		c.mu.Unlock()
		if done == len(ids) {
			return last, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return last, fmt.Errorf("%d of %d jobs completed within %s", done, len(ids), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// started returns when job id went in progress (ok false: never).
func (c *jobClock) started(id int64) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.inProgress[id]
	return t, ok
}

// jobIDs are the GitHub job IDs of a replayed day's jobs: 100, 101, ...
func jobIDs(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(100 + i)
	}
	return ids
}

// replayDay sends a workday's jobs at their (compressed) times from start:
// send(i, j) runs in a goroutine of its own at job j's time, so a burst's
// deliveries go out together, as GitHub's do. It returns once every send
// has returned, with the first of their errors.
func replayDay(ctx context.Context, start time.Time, day []costJob, send func(i int, j costJob) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i, j := range day {
		if wait := time.Until(start.Add(compress(j.at))); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := send(i, j); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d deliveries failed, first: %w", len(errs), errs[0])
	}
	return nil
}
