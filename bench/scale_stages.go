package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/testing/harness"
)

// syncHandled is where one synchronize delivery's signal sits in its
// workflow's history: when the signal was recorded, when the workflow task
// that handled it started and completed, and whether that task went to the
// worker's sticky queue (the workflow was in its cache) or to the shared
// one (the worker had to replay the history first).
type syncHandled struct {
	signaled, started, done time.Time
	sticky                  bool
}

// syncStages takes a burst's latency apart, delivery by delivery:
//   - intake: delivery sent → signal recorded (the webhook server, its
//     SignalWithStart, the dev server's write);
//   - queue: signal recorded → its workflow task started (the task's
//     dispatch by matching, the worker's poll);
//   - run: task started → completed (the worker's handling, a replay
//     included when the workflow was not in its cache).
type syncStages struct {
	intake, queue, run *harness.Samples
	// unsticky counts the tasks the shared queue carried.
	unsticky int
}

func stagesOf(sent []syncSent, handled map[string]syncHandled) *syncStages {
	st := &syncStages{intake: &harness.Samples{}, queue: &harness.Samples{}, run: &harness.Samples{}}
	for _, x := range sent {
		h, ok := handled[x.delivery]
		if !x.ok || !ok {
			continue
		}
		st.intake.Add(h.signaled.Sub(x.sent))
		st.queue.Add(h.started.Sub(h.signaled))
		st.run.Add(h.done.Sub(h.started))
		if !h.sticky {
			st.unsticky++
		}
	}
	return st
}

func (st *syncStages) logFields() []any {
	return []any{
		"intake_p50", st.intake.Quantile(0.5), "intake_p99", st.intake.Quantile(0.99),
		"queue_p50", st.queue.Quantile(0.5), "queue_p99", st.queue.Quantile(0.99),
		"run_p50", st.run.Quantile(0.5), "run_p99", st.run.Quantile(0.99),
		"tasks_not_sticky", st.unsticky,
	}
}

// burstCPU is the CPU the stack's processes used, and the host's busy and
// stolen time (a virtual machine's CPU taken by its host), over a burst.
type burstCPU struct {
	wall                                    time.Duration
	temporal, worker, webhook, bench, extra time.Duration
	hostBusy, hostSteal                     time.Duration
	at                                      time.Time
	procs                                   map[int]procEntry
	skip                                    map[int]bool // the processes counted above
	// others names the other processes that used the most CPU (since).
	others []procUse
}

// burstCPU reads the counters now.
func (s *scaleRun) burstCPU() burstCPU {
	c := s.cpu()
	busy, steal := hostCPU()
	return burstCPU{temporal: c[0], worker: c[1], webhook: c[2], bench: c[3], extra: c[4], hostBusy: busy, hostSteal: steal, at: time.Now(),
		procs: procTable(), skip: map[int]bool{s.h.Temporal.Pid(): true, s.h.Worker.Pid(): true, s.h.Webhook.Pid(): true, os.Getpid(): true}}
}

// since is the use between an earlier reading and this one.
func (c burstCPU) since(a burstCPU) burstCPU {
	return burstCPU{wall: c.at.Sub(a.at), temporal: c.temporal - a.temporal, worker: c.worker - a.worker, webhook: c.webhook - a.webhook,
		bench: c.bench - a.bench, extra: c.extra - a.extra, hostBusy: c.hostBusy - a.hostBusy, hostSteal: c.hostSteal - a.hostSteal, at: c.at,
		others: topOthers(a.procs, c.procs, c.skip, 5)}
}

// share is d as a share of one core over the burst's wall time.
func (c burstCPU) share(d time.Duration) float64 {
	if c.wall <= 0 {
		return 0
	}
	return float64(d) / float64(c.wall)
}

func (c burstCPU) logFields() []any {
	return []any{"cpu_wall", c.wall.Round(time.Millisecond), "cpu_temporal", c.temporal, "cpu_worker", c.worker, "cpu_webhook", c.webhook,
		"cpu_bench", c.bench, "cpu_children", c.extra, "cpu_host_busy", c.hostBusy, "cpu_host_steal", c.hostSteal,
		"cpu_top_others", fmt.Sprint(c.others)}
}

// note describes the burst's CPU, in cores (1.0 is one core busy all the
// burst long).
func (c burstCPU) note() string {
	return fmt.Sprintf("cores used over the burst's %.1f s: dev server %.2f, worker %.2f, webhook %.2f, bench (emulator, GitHub double) %.2f, "+
		"machines' commands %.2f; host busy %.2f of %d, stolen by its hypervisor %.2f",
		c.wall.Seconds(), c.share(c.temporal), c.share(c.worker), c.share(c.webhook), c.share(c.bench), c.share(c.extra),
		c.share(c.hostBusy), runtime.NumCPU(), c.share(c.hostSteal)) + c.othersNote()
}

// othersNote names the three other processes that used the most CPU, in
// cores.
func (c burstCPU) othersNote() string {
	var parts []string
	for _, o := range c.others[:min(3, len(c.others))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", o.name, c.share(o.cpu)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "; busiest other processes: " + strings.Join(parts, ", ")
}

// hostCPU is the host's CPU time, summed over its cores, spent busy (user,
// nice, system, interrupts, steal included) and stolen (steal), from
// /proc/stat. 0, 0 when unreadable.
func hostCPU() (busy, steal time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var ticks [8]int64
	for i := range ticks {
		ticks[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	tick := 10 * time.Millisecond // USER_HZ is 100 on Linux
	busyTicks := ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
	return time.Duration(busyTicks) * tick, time.Duration(ticks[7]) * tick
}

// syncRows are the rows of the burst with to previews open, next to the
// baseline's: its p50 and p99, where its p99 went, the deliveries lost,
// and the CPU used meanwhile.
func (s *scaleRun) syncRows(to int, r *syncResult) []Row {
	b := s.base.sync
	p99Ratio := float64(r.lat.Quantile(0.99)) / float64(b.lat.Quantile(0.99))
	bareRatio := float64(r.bare.Quantile(0.99)) / float64(b.bare.Quantile(0.99))
	rows := []Row{
		{Metric: fmt.Sprintf("webhook → signal handled p50, %d open (%d synchronize at %d/s)", to, s.syncs, scaleSyncRate), Value: MS(r.lat.Quantile(0.5)), Unit: "ms",
			Baseline: F(MS(b.lat.Quantile(0.5))), Ratio: F(float64(r.lat.Quantile(0.5)) / float64(b.lat.Quantile(0.5))),
			Note: fmt.Sprintf("delivery sent → first workflow task completed after the signal; baseline: %d previews open; "+
				"each burst sent once the dev server and the worker were idle (%s after the last preview was ready; baseline %s)",
				scaleBase, s.quiet, s.base.quiet)},
		{Metric: fmt.Sprintf("webhook → signal handled p99, %d open", to), Value: MS(r.lat.Quantile(0.99)), Unit: "ms",
			Baseline: F(MS(b.lat.Quantile(0.99))), Ratio: F(p99Ratio), Goal: "≤ 2× baseline", Met: B(p99Ratio <= 2),
			Note: fmt.Sprintf("the floor's own ratio, next row: %.2f", bareRatio)},
		{Metric: fmt.Sprintf("floor: a bare workflow's signal handled p99, %d open", to), Value: MS(r.bare.Quantile(0.99)), Unit: "ms",
			Baseline: F(MS(b.bare.Quantile(0.99))), Ratio: F(bareRatio),
			Note: fmt.Sprintf("p50 %.1f ms, baseline %.1f ms; signals sent by the bench straight to Temporal halfway between the deliveries, to %d workflows "+
				"of a worker of the bench's that do nothing with them; %d lost, baseline %d", MS(r.bare.Quantile(0.5)), MS(b.bare.Quantile(0.5)), scaleBase, r.bareBad, b.bareBad)},
	}
	for _, st := range []struct {
		name     string
		now, was *harness.Samples
	}{
		{"delivery sent → signal in the history (webhook, SignalWithStart)", r.stages.intake, b.stages.intake},
		{"signal → its workflow task started (matching, the worker's poll)", r.stages.queue, b.stages.queue},
		{"workflow task started → completed (the worker)", r.stages.run, b.stages.run},
	} {
		rows = append(rows, Row{Metric: fmt.Sprintf("where the p99 goes, %d open: %s, p99", to, st.name), Value: MS(st.now.Quantile(0.99)), Unit: "ms",
			Baseline: F(MS(st.was.Quantile(0.99))), Note: fmt.Sprintf("p50 %.1f ms, baseline %.1f ms", MS(st.now.Quantile(0.5)), MS(st.was.Quantile(0.5)))})
	}
	return append(rows,
		Row{Metric: fmt.Sprintf("signals' workflow tasks on the shared queue (worker cache missed), %d open", to), Value: float64(r.stages.unsticky),
			Baseline: F(float64(b.stages.unsticky)), Note: fmt.Sprintf("of %d handled", r.lat.Len())},
		Row{Metric: fmt.Sprintf("host CPU busy during the burst, %d open (cores)", to), Value: r.cpu.share(r.cpu.hostBusy),
			Baseline: F(b.cpu.share(b.cpu.hostBusy)), Note: r.cpu.note()},
		Row{Metric: fmt.Sprintf("synchronize deliveries refused or never handled, %d open", to), Value: float64(r.bad), Baseline: F(float64(b.bad)),
			Goal: "0", Met: B(r.bad == 0 && b.bad == 0)},
	)
}

// procEntry is one process's CPU so far: its own, and that of its children
// it reaped (where a short-lived command's CPU ends up).
type procEntry struct {
	comm        string
	own, reaped time.Duration
}

// procTable reads every process's CPU from /proc.
func procTable() map[int]procEntry {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	t := make(map[int]procEntry, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		f := statFields(e.Name())
		t[pid] = procEntry{comm: strings.TrimSpace(string(comm)), own: ticksAt(f, 11), reaped: ticksAt(f, 13)}
	}
	return t
}

// topOthers names the processes, other than skip, that used the most CPU
// between two tables, by name: "name own" for what live processes used,
// "name reaped" for their children that exited meanwhile (a process that
// exited itself is in its parent's reaped). At most n, largest first.
func topOthers(before, after map[int]procEntry, skip map[int]bool, n int) []procUse {
	by := map[string]time.Duration{}
	for pid, a := range after {
		b := before[pid] // zero when the process started meanwhile
		if b.comm != "" && b.comm != a.comm {
			b = procEntry{} // the pid was reused
		}
		if !skip[pid] {
			by[a.comm+" own"] += a.own - b.own
			by[a.comm+" reaped"] += a.reaped - b.reaped
		}
	}
	var all []procUse
	for k, v := range by {
		if v > 0 {
			all = append(all, procUse{k, v})
		}
	}
	slices.SortFunc(all, func(x, y procUse) int { return int(y.cpu - x.cpu) })
	return all[:min(n, len(all))]
}

// procUse is the CPU used by the processes of one name ("name own"), or by
// the children they reaped ("name reaped").
type procUse struct {
	name string
	cpu  time.Duration
}

func (u procUse) String() string { return fmt.Sprintf("%s=%s", u.name, u.cpu) }
