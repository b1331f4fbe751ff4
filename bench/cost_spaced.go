package main

import (
	"context"
	"fmt"
	"time"

	"github.com/drydock-dev/drydock/emulator"
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
// and returns what was awake per job beyond the jobs' own.
func spacedOverhead(ctx context.Context, e *Env, h *harness.Harness) (awakeBeyond, error) {
	h.Emu.ResetStats()
	ids := make([]int64, spacedJobs)
	for i := range ids {
		ids[i] = int64(spacedFirst + i)
		if _, _, err := queueJob(ctx, h, ids[i], spacedJobDur); err != nil {
			return awakeBeyond{}, err
		}
		if _, err := waitRunnerJobs(ctx, h, ids[i:i+1], 2*time.Minute); err != nil {
			return awakeBeyond{}, fmt.Errorf("spaced job: %w", err)
		}
		if err := waitPoolAsleep(ctx, h, costPool, 1, 2*time.Minute); err != nil {
			return awakeBeyond{}, err
		}
	}
	st := h.Emu.Stats()
	per := beyondPerJob(st, float64(spacedJobs)*spacedJobDur.Seconds()*costVCPU, spacedJobs)
	e.Log.Info("spaced jobs done", "jobs", spacedJobs, "awake_vcpu_s", st.AwakeVCPUSeconds, "wakes", st.Wakes,
		"beyond_per_job", per.total, "platform_per_job", per.platform)
	return per, nil
}

// awakeBeyond is what a pool's machines were awake per job beyond the jobs'
// own run, in machine-seconds, and the part of it that was the platform's
// transitions (booting, waking, going to sleep: the emulator's BootDelay,
// WakeDelay and SleepDelay, as a real platform's snapshot restore and save
// take their time). The rest, total − platform, is Drydock's: a machine
// running with no job on it (the wake's end to the runner's start, the
// runner's start to GitHub's pickup, the job's end to the sleep call).
type awakeBeyond struct {
	total, platform float64
}

func (b awakeBeyond) drydock() float64 { return b.total - b.platform }

// beyondPerJob reads an awakeBeyond from the emulator's accounting of n jobs
// that ran ranVCPU vCPU-seconds in all.
func beyondPerJob(st emulator.Stats, ranVCPU float64, n int) awakeBeyond {
	return awakeBeyond{
		total:    (st.AwakeVCPUSeconds - ranVCPU) / costVCPU / float64(n),
		platform: (st.AwakeVCPUSeconds - st.RunningVCPUSeconds) / costVCPU / float64(n),
	}
}

// costBeyondRows are the awake seconds beyond the jobs' own, per job, for
// the compressed day as run and for the uncompressed day (spaced jobs),
// each with Drydock's share (the platform's transitions taken out), and the
// awake share of always-on the uncompressed figure implies for the real
// 8-hour day. The goal is on Drydock's share: the platform's own wake and
// sleep (0.4 s a wake here) are above it whatever the orchestration does.
func costBeyondRows(n int, compressed awakeBeyond, wakes int64, spaced awakeBeyond, ran, alwaysOnReal float64) []Row {
	const goal = 0.2
	realAwake := ran*costCompression + float64(n)*spaced.total*costVCPU
	platform := fmt.Sprintf("the emulator's %s boot, %s wake and %s sleep", costBoot, costWake, costSleep)
	return []Row{
		{Metric: "awake beyond the jobs' own, per job: compressed day", Value: compressed.total, Unit: "machine-s",
			Note: fmt.Sprintf("provisioning, wake, runner start, release to sleep; %d wakes for %d jobs (the rest took a machine another job had just freed); %.2f of it the platform's transitions (%s)",
				wakes, n, compressed.platform, platform)},
		{Metric: "Drydock's share of it (running, no job on the machine): compressed day", Value: compressed.drydock(), Unit: "machine-s",
			Goal: fmt.Sprintf("≤ %.1f", goal), Met: B(compressed.drydock() <= goal),
			Note: "wake's end → runner start → GitHub's pickup, job's end → sleep call; and the machines provisioned for the bursts, set up but not yet leased"},
		{Metric: "awake beyond the jobs' own, per job: uncompressed day", Value: spaced.total, Unit: "machine-s",
			Note: fmt.Sprintf("%d jobs of %s run one at a time, each waking a sleeping machine, as a real day's jobs minutes apart do; %.2f of it the platform's transitions (%s); the real day is then awake %.3f of always-on (the jobs alone: %.3f)",
				spacedJobs, spacedJobDur, spaced.platform, platform, realAwake/alwaysOnReal, ran*costCompression/alwaysOnReal)},
		{Metric: "Drydock's share of it (running, no job on the machine): uncompressed day", Value: spaced.drydock(), Unit: "machine-s",
			Goal: fmt.Sprintf("≤ %.1f", goal), Met: B(spaced.drydock() <= goal),
			Note: "wake's end → runner start → GitHub's pickup, job's end → sleep call"},
	}
}
