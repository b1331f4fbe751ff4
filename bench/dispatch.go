package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

const (
	dispatchJobs     = 200
	dispatchMachines = 6
	dispatchPool     = "dispatch"
	// dispatchJobDuration is how long the stand-in runner "runs" each job.
	dispatchJobDuration = 50 * time.Millisecond
	// The floor's workflow and activity, on their own task queue served by
	// a worker in this process.
	floorQueue    = "bench-dispatch-floor"
	floorWorkflow = "BenchDispatchFloor"
	floorActivity = "BenchWakeMachine"
)

func init() {
	register(Scenario{Order: 4, Name: "dispatch", Title: "4. Runner dispatch: queued webhook → wake call", Run: dispatchScenario})
}

// dispatchScenario times a workflow_job queued webhook to the Dedalus wake
// call it causes, on a pool whose machines are provisioned and asleep.
//
// A first round of dispatchMachines jobs at once (untimed) starts the pool,
// which provisions its min_idle machines; they sleep once their jobs are
// done. Then jobs are delivered one at a time, each once every machine of
// the pool is idle and asleep (its sleep settled): the pool leases a
// machine that is awake and idle before an asleep one (warm caches), so a
// job arriving as the previous one's machine is released would get that
// machine awake, with no wake call. Every job thus leases an asleep machine
// and wakes it; the clock runs from just before the delivery is sent to the
// emulator receiving the wake call (Config.Observe). Each measurement is
// checked: the call woke the machine the job leased (RunnerJob status), and
// that machine was asleep when the call arrived.
//
// Baseline, measured just before each job in the same quiet moment: the least any Temporal-driven
// dispatcher pays on the same dev server and emulator. A Go client starts
// a workflow (as the intake starts RunnerJob) whose single activity wakes
// an asleep machine the way Drydock's wake activity does (GET the machine,
// then POST wake), run by a worker in this process. What Drydock adds on
// top: the webhook's signature check and parsing, RunnerJob's pool-settings
// local activity, the acquire Update to RunnerPool (a local activity on
// the fast path) and the pool's lease decision; Drydock's wake is a local
// activity in the same workflow task, so it can come in under the floor.
//
// Both run on the dev server with Drydock's dynamic config
// (workflows.DevServerFlags): its one history shard reads its transfer
// queue up to workflows.TransferPollRPS times a second, not Temporal's
// default 20, at which the floor's own tasks, made just before, held a
// job's first workflow task up to 50 ms.
func dispatchScenario(ctx context.Context, e *Env) ([]Row, error) {
	wakes := &wakeLog{notify: make(chan struct{}, 1)}
	h, err := e.Start(ctx, harness.Options{
		WorkerEnv: dispatchWorkerEnv(e),
		// Delays only shorten the cycle between jobs: the clock stops as the wake call arrives.
		Emulator: emulator.Config{BootDelay: 200 * time.Millisecond, WakeDelay: 50 * time.Millisecond, SleepDelay: 50 * time.Millisecond,
			Observe: wakes.observe},
		Pools: runnerPools(benchPool{Name: dispatchPool, VCPU: 4, MinIdle: dispatchMachines, MaxMachines: dispatchMachines,
			Autosleep: "10m", PickupTimeout: "30s"}),
	})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	wakes.emu.Store(h.Emu)

	if err := dispatchWarmUp(ctx, h); err != nil {
		return nil, err
	}
	floor, err := startFloor(ctx, h)
	if err != nil {
		return nil, err
	}
	defer floor.stop()
	for i := range 3 { // untimed: the new task queue's first workflows
		if _, err := floor.once(ctx, wakes, fmt.Sprintf("warm-%d", i)); err != nil {
			return nil, err
		}
		floor.sleep(fmt.Sprintf("warm-%d", i))
	}

	n := e.N(dispatchJobs)
	d := &dispatchRun{h: h, wakes: wakes, floor: floor}
	for i := range n {
		if err := d.job(ctx, i); err != nil {
			return nil, err
		}
		if (i+1)%50 == 0 {
			e.Log.Info("dispatch", "jobs", i+1, "p50", d.lat.Quantile(0.5), "floor_p50", d.base.Quantile(0.5))
		}
	}
	completed, err := waitRunnerJobs(ctx, h, d.ids, 3*time.Minute)
	if err != nil {
		return nil, err
	}
	if err := dispatchProfile(ctx, e, h, wakes, floor, n); err != nil {
		return nil, err
	}
	return d.rows(n, completed), nil
}

// dispatchWorkerEnv turns the worker's profiler on with -pprof.
func dispatchWorkerEnv(e *Env) []string {
	if e.Pprof == "" {
		return nil
	}
	return []string{"WORKER_PPROF=true"}
}

// dispatchProfile takes a CPU profile of the worker (-pprof) over 10 s of
// more jobs dispatched as the timed ones were, after them and not counted;
// nothing without -pprof.
func dispatchProfile(ctx context.Context, e *Env, h *harness.Harness, wakes *wakeLog, floor *floor, from int) error {
	if e.Pprof == "" {
		return nil
	}
	p := &dispatchRun{h: h, wakes: wakes, floor: floor}
	i := from
	return e.profile(ctx, h.WorkerAdminURL, "profile", 10*time.Second, "dispatch-worker.pprof", func(ctx context.Context) error {
		i++
		return p.job(ctx, i)
	})
}

// dispatchWarmUp is the untimed first round: dispatchMachines jobs at
// once start the pool, which provisions its machines; it returns once
// they are done and the machines asleep.
func dispatchWarmUp(ctx context.Context, h *harness.Harness) error {
	var warm []int64
	for i := range dispatchMachines {
		id := int64(1 + i)
		warm = append(warm, id)
		if _, _, err := queueJob(ctx, h, id, dispatchJobDuration); err != nil {
			return err
		}
	}
	if _, err := waitRunnerJobs(ctx, h, warm, 3*time.Minute); err != nil {
		return fmt.Errorf("warm-up round: %w", err)
	}
	return waitPoolAsleep(ctx, h, dispatchPool, dispatchMachines, 2*time.Minute)
}

// dispatchRun is the timed round: the jobs delivered, and what was
// measured of them and of the floor.
type dispatchRun struct {
	h     *harness.Harness
	wakes *wakeLog
	floor *floor

	lat, base, intake         harness.Samples
	ids                       []int64
	wrongMachine, awakeAtCall int
}

// job measures the floor, then job i: once every machine is asleep, from
// just before its queued delivery is sent to the wake call it causes.
func (d *dispatchRun) job(ctx context.Context, i int) error {
	h, wakes := d.h, d.wakes
	id := int64(1000 + i)
	d.ids = append(d.ids, id)
	if err := waitAllAsleep(ctx, h, time.Minute); err != nil {
		return fmt.Errorf("job %d: %w", id, err)
	}
	// The baseline first, in the same quiet moment as the job: nothing
	// else runs then (the previous job is done, its machine asleep).
	fd, err := d.floor.once(ctx, wakes, fmt.Sprint(i))
	if err != nil {
		return err
	}
	d.base.Add(fd)
	mark := wakes.len()
	began := time.Now()
	_, took, err := queueJob(ctx, h, id, dispatchJobDuration)
	if err != nil {
		return err
	}
	d.intake.Add(took)
	call, err := wakes.next(ctx, mark, "", time.Minute)
	if err != nil {
		st, _ := jobStatus(ctx, h, id)
		return fmt.Errorf("job %d: %w (RunnerJob %s on machine %q)", id, err, st.Phase, st.MachineID)
	}
	d.floor.sleep(fmt.Sprint(i)) // untimed, while the job's runner starts
	st, err := jobStatus(ctx, h, id)
	switch {
	case err != nil:
		return fmt.Errorf("job %d: %w", id, err)
	case st.MachineID != call.machine:
		d.wrongMachine++ // not this job's wake: not a measurement
	case call.phase != "sleeping":
		d.awakeAtCall++
	default:
		d.lat.Add(call.at.Sub(began))
	}
	return nil
}

// rows are the scenario's rows, for n jobs of which completed completed.
func (d *dispatchRun) rows(n, completed int) []Row {
	lat, base, intake, wrongMachine, awakeAtCall := &d.lat, &d.base, &d.intake, d.wrongMachine, d.awakeAtCall
	p50, p99 := lat.Quantile(0.5), lat.Quantile(0.99)
	b50, b99 := base.Quantile(0.5), base.Quantile(0.99)
	measured := lat.Len()
	return []Row{
		{Metric: fmt.Sprintf("p50 queued webhook → wake call reaching Dedalus (%d jobs)", measured), Value: MS(p50), Unit: "ms", Baseline: F(MS(b50)), Ratio: F(float64(p50) / float64(b50)),
			Goal: "< 30 ms", Met: B(p50 < 30*time.Millisecond),
			Note: fmt.Sprintf("one job at a time, each while all %d machines of the pool are asleep; baseline: a Go client starts a workflow whose one activity wakes an asleep machine as Drydock's does, same dev server (Drydock's dynamic config: history.transferProcessorMaxPollRPS=%s) and emulator, timed just before each job", dispatchMachines, workflows.TransferPollRPS)},
		{Metric: "p99 queued webhook → wake call", Value: MS(p99), Unit: "ms", Baseline: F(MS(b99)), Ratio: F(float64(p99) / float64(b99)),
			Goal: "< 100 ms", Met: B(p99 < 100*time.Millisecond)},
		{Metric: "webhook answered (202) after, p50", Value: MS(intake.Quantile(0.5)), Unit: "ms",
			Note: fmt.Sprintf("the intake's own response time, part of the above; p99 %.0f ms", MS(intake.Quantile(0.99)))},
		{Metric: fmt.Sprintf("jobs measured (of %d)", n), Value: float64(measured), Goal: fmt.Sprint(n), Met: B(measured == n),
			Note: fmt.Sprintf("excluded: %d wake calls on another machine than the job's, %d on a machine already awake", wrongMachine, awakeAtCall)},
		{Metric: fmt.Sprintf("jobs completed on GitHub's side (of %d)", n), Value: float64(completed), Goal: fmt.Sprint(n), Met: B(completed == n)},
	}
}

// wakeLog is the emulator's Observe hook: every wake call, with the
// machine's phase when it arrived.
type wakeLog struct {
	emu    atomic.Pointer[emulator.Server]
	notify chan struct{}

	mu    sync.Mutex
	calls []wakeCall
}

type wakeCall struct {
	machine string
	at      time.Time
	phase   string // the machine's phase as the call arrived
}

func (l *wakeLog) observe(op, machineID string, at time.Time) {
	if op != "wakeMachine" {
		return
	}
	phase := ""
	if emu := l.emu.Load(); emu != nil {
		for _, m := range emu.Stats().Machines {
			if m.MachineID == machineID {
				phase = string(m.Phase)
			}
		}
	}
	l.mu.Lock()
	l.calls = append(l.calls, wakeCall{machine: machineID, at: at, phase: phase})
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

func (l *wakeLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls)
}

// next returns the first wake call after the first `from` ones (of
// machineID, if not empty), waiting for it up to timeout.
func (l *wakeLog) next(ctx context.Context, from int, machineID string, timeout time.Duration) (wakeCall, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for _, c := range l.calls[from:] {
			if machineID == "" || c.machine == machineID {
				l.mu.Unlock()
				return c, nil
			}
		}
		l.mu.Unlock()
		select {
		case <-l.notify:
		case <-time.After(50 * time.Millisecond): // a notification taken by an earlier wait
		case <-deadline.C:
			return wakeCall{}, fmt.Errorf("no wake call within %s", timeout)
		case <-ctx.Done():
			return wakeCall{}, ctx.Err()
		}
	}
}

// waitAllAsleep waits until every machine of the pool is idle and asleep,
// so that the next job leases an asleep machine. (The machine put to sleep
// last may still count as being put to sleep in the pool, which then
// leases another one of its asleep machines.)
func waitAllAsleep(ctx context.Context, h *harness.Harness, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		inv, err := inventory(ctx, h, dispatchPool)
		if err == nil && len(inv.Machines) > 0 && slices.IndexFunc(inv.Machines, func(m runnerapi.PoolMachine) bool {
			return m.State != runnerapi.MachineIdle || machinePhase(h, m.MachineID) != "sleeping"
		}) < 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("pool machines not all idle and asleep within " + timeout.String())
}

// floor is the baseline dispatcher: a workflow with one wake activity.
type floor struct {
	h       *harness.Harness
	dc      *dedalus.Client
	w       worker.Worker
	machine string
	// asleep receives the outcome of putting the machine to sleep again
	// after a wake (untimed, while the job that follows runs).
	asleep chan error
	ctx    context.Context // of the background sleeps
	cancel context.CancelFunc
}

func startFloor(ctx context.Context, h *harness.Harness) (*floor, error) {
	dc, err := dedalus.New(dedalus.Options{BaseURL: h.Emu.URL(), APIKey: h.Emu.APIKey()})
	if err != nil {
		return nil, err
	}
	m, err := dc.CreateMachine(ctx, dedalus.CreateMachineRequest{VCPU: 4, MemoryMiB: 2048, StorageGiB: 10, Autosleep: "10m"}, "bench-floor-create")
	if err != nil {
		return nil, fmt.Errorf("create the floor's machine: %w", err)
	}
	if err := waitMachinePhase(ctx, h, m.MachineID, "running", time.Minute); err != nil {
		return nil, err
	}
	f := &floor{h: h, dc: dc, machine: m.MachineID}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.sleep("first")
	f.w = worker.New(h.TC, floorQueue, worker.Options{})
	f.w.RegisterWorkflowWithOptions(floorWorkflowFunc, workflow.RegisterOptions{Name: floorWorkflow})
	f.w.RegisterActivityWithOptions(f.wake, activity.RegisterOptions{Name: floorActivity})
	if err := f.w.Start(); err != nil {
		return nil, fmt.Errorf("start the floor's worker: %w", err)
	}
	return f, nil
}

func (f *floor) stop() {
	f.cancel()
	f.w.Stop()
}

// sleep puts the floor's machine to sleep in the background.
func (f *floor) sleep(tag string) {
	f.asleep = make(chan error, 1)
	go func() {
		_, err := f.dc.SleepAndWait(f.ctx, f.machine, "bench-floor-sleep-"+tag)
		f.asleep <- err
	}()
}

func floorWorkflowFunc(ctx workflow.Context, machineID string) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	return workflow.ExecuteActivity(ctx, floorActivity, machineID).Get(ctx, nil)
}

// wake is the floor's activity: what Drydock's wake activity does.
func (f *floor) wake(ctx context.Context, machineID string) error {
	info := activity.GetInfo(ctx)
	_, err := f.dc.WakeAndWait(ctx, machineID, info.WorkflowExecution.ID+"/"+info.ActivityID)
	return err
}

// once times a workflow start to the wake call its activity makes on the
// floor's asleep machine and waits for the workflow to end. Call sleep
// before the next once.
func (f *floor) once(ctx context.Context, wakes *wakeLog, tag string) (time.Duration, error) {
	if err := <-f.asleep; err != nil {
		return 0, fmt.Errorf("floor: sleep %s: %w", f.machine, err)
	}
	mark := wakes.len()
	began := time.Now()
	run, err := f.h.TC.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "bench-floor-" + tag, TaskQueue: floorQueue}, floorWorkflow, f.machine)
	if err != nil {
		return 0, fmt.Errorf("floor: start: %w", err)
	}
	call, err := wakes.next(ctx, mark, f.machine, time.Minute)
	if err != nil {
		return 0, fmt.Errorf("floor: %w", err)
	}
	if err := run.Get(ctx, nil); err != nil {
		return 0, fmt.Errorf("floor: %w", err)
	}
	return call.at.Sub(began), nil
}
