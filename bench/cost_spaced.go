package main

import (
	"context"
	"fmt"
	"time"

	"github.com/drydock-dev/drydock/internal/testing/harness"
)

// The uncompressed day. Compressed 240×, the day's jobs overlap far more
// than a real day's: a job often finds a machine another job just freed,
// awake, and pays no wake and no sleep. A real day's jobs are minutes apart
// (outside the bursts, 6 to 20 an hour on 8 machines): nearly every one
// wakes a sleeping machine and puts it back to sleep. Drydock's costs per
// job are not compressed (they take the same seconds either way), so the
// uncompressed day's figure is measured directly: spacedJobs jobs run one
// at a time, each queued once the pool is asleep again, and what each costs
// awake beyond its own run is the uncompressed day's figure per job (an
// upper bound: the few jobs of a real day that queue behind a full pool in
// a burst pay less).
const (
	spacedJobs   = 8
	spacedJobDur = time.Second
	spacedFirst  = 10_000 // job IDs, after the day's
)

// spacedOverhead runs the spaced jobs on the cost scenario's pool (asleep)
// and returns the awake machine-seconds per job beyond the jobs' own.
func spacedOverhead(ctx context.Context, e *Env, h *harness.Harness) (float64, error) {
	h.Emu.ResetStats()
	ids := make([]int64, spacedJobs)
	for i := range ids {
		ids[i] = int64(spacedFirst + i)
		if _, _, err := queueJob(ctx, h, ids[i], spacedJobDur); err != nil {
			return 0, err
		}
		if _, err := waitRunnerJobs(ctx, h, ids[i:i+1], 2*time.Minute); err != nil {
			return 0, fmt.Errorf("spaced job: %w", err)
		}
		if err := waitPoolAsleep(ctx, h, costPool, 1, 2*time.Minute); err != nil {
			return 0, err
		}
	}
	st := h.Emu.Stats()
	ran := float64(spacedJobs) * spacedJobDur.Seconds() * costVCPU
	per := (st.AwakeVCPUSeconds - ran) / costVCPU / spacedJobs
	e.Log.Info("spaced jobs done", "jobs", spacedJobs, "awake_vcpu_s", st.AwakeVCPUSeconds, "wakes", st.Wakes,
		"beyond_per_job", per)
	return per, nil
}

// costBeyondRows are the awake seconds beyond the jobs' own, per job, for
// the compressed day as run and for the uncompressed day (spaced jobs),
// with the awake share of always-on each implies for the real 8-hour day.
func costBeyondRows(n int, awake, ran float64, wakes int64, spaced, alwaysOnReal float64) []Row {
	const goal = 0.2
	compressed := (awake - ran) / costVCPU / float64(n)
	realAwake := ran*costCompression + float64(n)*spaced*costVCPU
	return []Row{
		{Metric: "awake beyond the jobs' own, per job: compressed day", Value: compressed, Unit: "machine-s",
			Goal: fmt.Sprintf("≤ %.1f", goal), Met: B(compressed <= goal),
			Note: fmt.Sprintf("provisioning, wake, runner start, release to sleep; %d wakes for %d jobs (the rest took a machine another job had just freed)", wakes, n)},
		{Metric: "awake beyond the jobs' own, per job: uncompressed day", Value: spaced, Unit: "machine-s",
			Goal: fmt.Sprintf("≤ %.1f", goal), Met: B(spaced <= goal),
			Note: fmt.Sprintf("%d jobs of %s run one at a time, each waking a sleeping machine, as a real day's jobs minutes apart do; the real day is then awake %.3f of always-on (the jobs alone: %.3f)",
				spacedJobs, spacedJobDur, realAwake/alwaysOnReal, ran*costCompression/alwaysOnReal)},
	}
}
