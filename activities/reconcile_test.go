package activities_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// fakePool answers the inventory query with the machines it is given.
func fakePool(ctx workflow.Context, in runnerapi.PoolInput) error {
	inv := runnerapi.Inventory{Pool: in.Pool.Name, Machines: in.Carry.Machines}
	if err := workflow.SetQueryHandler(ctx, runnerapi.QueryInventory, func() (runnerapi.Inventory, error) { return inv, nil }); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

// fakePreview answers the status query with its machine.
func fakePreview(ctx workflow.Context, machineID string) error {
	if err := workflow.SetQueryHandler(ctx, "status", func() (map[string]string, error) {
		return map[string]string{"MachineID": machineID}, nil
	}); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

type runnerDir struct {
	runners []activities.RegisteredRunner
	// byScope: the runners of other scopes than the pool's (runners).
	byScope map[pools.Scope][]activities.RegisteredRunner
	removed []int64
	// removedFrom: the scope each removal was asked in.
	removedFrom []pools.Scope
}

func (d *runnerDir) ListRunners(_ context.Context, scope pools.Scope) ([]activities.RegisteredRunner, error) {
	if rs, ok := d.byScope[scope]; ok {
		return rs, nil
	}
	return d.runners, nil
}

func (d *runnerDir) RemoveRunner(_ context.Context, scope pools.Scope, id int64) error {
	d.removed = append(d.removed, id)
	d.removedFrom = append(d.removedFrom, scope)
	return nil
}

func TestReconcileDeletesOnlyUnownedMachinesAndRunners(t *testing.T) {
	emu, ctx, c, create := emulatorRig(t, time.Minute)
	poolMachine, previewMachine, orphan, listedMachine := create("pool"), create("preview"), create("orphan"), create("listed")

	queue := "reconcile-" + t.Name()
	tc := devServer.Client()
	startWorkflowWorker(t, tc, queue, map[string]any{runnerapi.RunnerPoolName: fakePool, "PreviewLifecycle": fakePreview})
	// A per-repo pool at organization scope: its runners register at their
	// jobs' repositories, whose runners are listed too (those it names).
	pool := pools.Pool{Name: "recon", Scope: pools.Scope{Kind: pools.ScopeOrg, Org: "octo"}, Repositories: []string{"octo/app", "*"}}
	appScope := pools.Scope{Kind: pools.ScopeRepo, Repo: "octo/app"}
	leased := runnerapi.RunnerName("recon", 1, 1)
	start := workflowStarter(t, ctx, tc, queue)
	start(runnerapi.PoolWorkflowID("recon"), runnerapi.RunnerPoolName, temporal.SearchAttributes{},
		runnerapi.PoolInput{Pool: pool, Carry: &runnerapi.PoolCarry{Machines: []runnerapi.PoolMachine{{MachineID: poolMachine, State: runnerapi.MachineState("busy"), RunnerName: leased}}}})
	start("preview:recon/test:1", "PreviewLifecycle", temporal.SearchAttributes{}, previewMachine)
	// A preview listed with its machine in its search attributes is not
	// queried (thousands of previews cost one list call): this one would
	// answer the query with no machine.
	start("preview:recon/test:2", "PreviewLifecycle", temporal.NewSearchAttributes(
		temporal.NewSearchAttributeKeyKeyword("DrydockMachineID").ValueSet(listedMachine),
		temporal.NewSearchAttributeKeyKeyword("DrydockPhase").ValueSet("ready")), "")
	// Visibility is eventually consistent: wait until the previews are listed.
	require.Eventually(t, func() bool {
		n, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: runningPreviews})
		return err == nil && n.GetCount() >= 2
	}, 10*time.Second, 100*time.Millisecond)

	dir := &runnerDir{runners: []activities.RegisteredRunner{
		{ID: 1, Name: leased},                                             // offline but leased: kept
		{ID: 2, Name: runnerapi.RunnerName("recon", 9, 1)},                // offline, unleased, ours: removed
		{ID: 3, Name: runnerapi.RunnerName("recon", 10, 1), Online: true}, // online: kept
		{ID: 4, Name: "someone-elses-runner"},                             // not ours: kept
	}, byScope: map[pools.Scope][]activities.RegisteredRunner{
		appScope: {{ID: 5, Name: runnerapi.RunnerName("recon", 11, 1)}}, // a repository's, offline, unleased: removed there
	}}
	r := &activities.Reconciler{Dedalus: c, Temporal: tc, Pools: &pools.Config{Pools: []pools.Pool{pool}}, Runners: dir, Grace: 0}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(r)

	// Within the grace period nothing is deleted.
	r.Grace = time.Hour
	res := reconcileOnce(t, env, r)
	assert.Equal(t, 4, res.Machines)
	assert.Equal(t, 3, res.Owned)
	assert.Equal(t, 1, res.Young)
	assert.Empty(t, res.DeletedMachines)

	r.Grace = 0
	dir.removedFrom = nil
	res = reconcileOnce(t, env, r)
	assert.Equal(t, []string{orphan}, res.DeletedMachines)
	assert.Equal(t, []string{runnerapi.RunnerName("recon", 9, 1), runnerapi.RunnerName("recon", 11, 1)}, res.RemovedRunners)
	assert.Equal(t, []pools.Scope{pool.Scope, appScope}, dir.removedFrom, "each removed where it is registered")
	assert.Empty(t, res.Errors)
	_, err := c.WaitForPhase(ctx, orphan, dedalus.PhaseDestroyed)
	require.NoError(t, err)
	assert.Equal(t, 3, emu.Stats().LiveMachines, "owned machines are untouched")
}

// fakeJob stands in for a RunnerJob: it answers the status query with the
// machine it leased and the runner it started.
func fakeJob(ctx workflow.Context, st runnerapi.RunnerJobStatus) error {
	if err := workflow.SetQueryHandler(ctx, runnerapi.QueryJobStatus, func() (runnerapi.RunnerJobStatus, error) { return st, nil }); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

// fakeProvision stands in for a RunnerProvision whose create is in flight:
// its CreateMachine activity has heartbeat the new machine's ID.
func fakeProvision(ctx workflow.Context, machineID string) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Hour, HeartbeatTimeout: time.Minute})
	return workflow.ExecuteActivity(ctx, "CreateMachine", machineID).Get(ctx, nil)
}

// creatingMachine heartbeats the machine ID, as Machines.CreateMachine does
// while it waits for the machine to boot, until it is cancelled.
func creatingMachine(ctx context.Context, machineID string) error {
	activity.RecordHeartbeat(ctx, machineID)
	<-ctx.Done()
	return ctx.Err()
}

// A preview that cannot answer its status query (here: it has no handler).
func mutePreview(ctx workflow.Context) error {
	return workflow.Await(ctx, func() bool { return false })
}

// ownerMachines are the machines of
// TestReconcileKeepsWhatRunningWorkflowsUseAndSurvivesMuteOwners: the ones
// running workflows own, and one nothing owns.
type ownerMachines struct {
	listedJob, queriedJob, provisioned, creating, orphan string
}

// startOwnerWorkflows starts the workflows that own m's machines in pool p:
// the pool, terminated and started again so that its inventory forgot the
// job machines, a job listed with its machine and one that must be asked,
// a provisioning listed with its machine and one whose create is in
// flight; it waits until visibility lists them and the create heartbeats.
func startOwnerWorkflows(t *testing.T, ctx context.Context, tc client.Client, start func(id, workflowType string, sa temporal.SearchAttributes, args ...any), p pools.Pool, m ownerMachines) {
	t.Helper()
	pool := p.Name
	poolAttr := temporal.NewSearchAttributeKeyKeyword("DrydockPool").ValueSet(pool)
	machineAttr := temporal.NewSearchAttributeKeyKeyword("DrydockMachineID")
	phaseAttr := temporal.NewSearchAttributeKeyKeyword("DrydockPhase")
	jobAttr := temporal.NewSearchAttributeKeyInt64("DrydockJobID")

	// The pool leased both job machines, then was terminated and started
	// again: its inventory has forgotten them, but the jobs still run on
	// them.
	start(runnerapi.PoolWorkflowID(pool), runnerapi.RunnerPoolName, temporal.NewSearchAttributes(poolAttr),
		runnerapi.PoolInput{Pool: p, Carry: &runnerapi.PoolCarry{Machines: []runnerapi.PoolMachine{
			{MachineID: m.listedJob, State: runnerapi.MachineState("busy"), RunnerName: runnerapi.RunnerName(pool, 101, 1)},
			{MachineID: m.queriedJob, State: runnerapi.MachineState("busy"), RunnerName: runnerapi.RunnerName(pool, 102, 2)},
		}}})
	require.Eventually(t, func() bool { // it ran
		_, err := tc.QueryWorkflow(ctx, runnerapi.PoolWorkflowID(pool), "", runnerapi.QueryInventory)
		return err == nil
	}, 10*time.Second, 100*time.Millisecond)
	require.NoError(t, tc.TerminateWorkflow(ctx, runnerapi.PoolWorkflowID(pool), "", "pool terminated"))
	// Started again, it knows none of them.
	start(runnerapi.PoolWorkflowID(pool), runnerapi.RunnerPoolName, temporal.NewSearchAttributes(poolAttr),
		runnerapi.PoolInput{Pool: p, Carry: &runnerapi.PoolCarry{}})
	// A job listed with its machine.
	start(runnerapi.JobWorkflowID(101), runnerapi.RunnerJobName, temporal.NewSearchAttributes(poolAttr, jobAttr.ValueSet(101),
		phaseAttr.ValueSet("running"), machineAttr.ValueSet(m.listedJob)),
		runnerapi.RunnerJobStatus{Pool: pool, JobID: 101, MachineID: m.listedJob, RunnerName: runnerapi.RunnerName(pool, 101, 1)})
	// A job whose machine is not in its search attributes: it is asked.
	start(runnerapi.JobWorkflowID(102), runnerapi.RunnerJobName, temporal.NewSearchAttributes(poolAttr, jobAttr.ValueSet(102),
		phaseAttr.ValueSet("waking")),
		runnerapi.RunnerJobStatus{Pool: pool, JobID: 102, MachineID: m.queriedJob, RunnerName: runnerapi.RunnerName(pool, 102, 2)})
	// A provisioning listed with its machine, and one whose create is in flight.
	start(runnerapi.ProvisionWorkflowID(pool, 1), runnerapi.RunnerProvisionName,
		temporal.NewSearchAttributes(poolAttr, machineAttr.ValueSet(m.provisioned)), "")
	start(runnerapi.ProvisionWorkflowID(pool, 2), runnerapi.RunnerProvisionName, temporal.NewSearchAttributes(poolAttr), m.creating)

	count := func(query string) int64 { return countWorkflows(t, ctx, tc, query) }
	require.Eventually(t, func() bool {
		return count("WorkflowType = 'RunnerJob' AND ExecutionStatus = 'Running'") >= 2 &&
			count("WorkflowType = 'RunnerProvision' AND ExecutionStatus = 'Running'") >= 2 &&
			count("WorkflowType = 'RunnerPool' AND ExecutionStatus = 'Running'") >= 1
	}, 10*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool { // the in-flight create has heartbeat
		d, err := tc.DescribeWorkflowExecution(ctx, runnerapi.ProvisionWorkflowID(pool, 2), "")
		return err == nil && len(d.GetPendingActivities()) == 1 && d.GetPendingActivities()[0].GetHeartbeatDetails() != nil
	}, 10*time.Second, 100*time.Millisecond)
}

// startOwnersWorker starts a worker on queue that runs the stand-ins for
// the owners (pool, job, provisioning with its in-flight create, and a mute
// preview); it stops when the test ends.
func startOwnersWorker(t *testing.T, tc client.Client, queue string) {
	t.Helper()
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(fakePool, workflow.RegisterOptions{Name: runnerapi.RunnerPoolName})
	w.RegisterWorkflowWithOptions(fakeJob, workflow.RegisterOptions{Name: runnerapi.RunnerJobName})
	w.RegisterWorkflowWithOptions(fakeProvision, workflow.RegisterOptions{Name: runnerapi.RunnerProvisionName})
	w.RegisterActivityWithOptions(creatingMachine, activity.RegisterOptions{Name: "CreateMachine"})
	w.RegisterWorkflowWithOptions(mutePreview, workflow.RegisterOptions{Name: "PreviewLifecycle"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
}

// meteredActivityEnv is an activity environment running r, whose metrics
// reg gathers.
func meteredActivityEnv(r *activities.Reconciler) (*testsuite.TestActivityEnvironment, *metrics.Registry) {
	var s testsuite.WorkflowTestSuite
	reg := metrics.New("test")
	s.SetMetricsHandler(reg.Temporal())
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(r)
	return env, reg
}

// runningPreviews lists the running previews.
const runningPreviews = "WorkflowType = 'PreviewLifecycle' AND ExecutionStatus = 'Running'"

// assertInUse checks that machines are still running.
func assertInUse(t *testing.T, ctx context.Context, c *dedalus.Client, ids ...string) {
	t.Helper()
	for _, id := range ids {
		got, err := c.GetMachine(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, dedalus.PhaseRunning, got.Status.Phase, "%s is in use", id)
	}
}

// waitGauge waits until a gauge of reg reads want.
func waitGauge(t *testing.T, reg *metrics.Registry, name, want string) {
	t.Helper()
	require.Eventually(t, func() bool { // the SDK's scope reports every second
		return gauge(t, reg, name) == want
	}, 10*time.Second, 50*time.Millisecond, "%s = %s", name, want)
}

// The machines of running RunnerJob and RunnerProvision workflows are owned
// even when their pool's inventory forgot them (terminated and restarted),
// and an owner that cannot answer stops all deletions for that run but not
// the rest of the work.
func TestReconcileKeepsWhatRunningWorkflowsUseAndSurvivesMuteOwners(t *testing.T) {
	ctx, c, create := reconcileRig(t)
	m := ownerMachines{listedJob: create("job-listed"), queriedJob: create("job-queried")}
	m.provisioned, m.creating = create("provision-listed"), create("provision-creating")
	m.orphan = create("orphan")

	queue := "reconcile-owners-" + t.Name()
	tc := devServer.Client()
	startOwnersWorker(t, tc, queue)

	const pool = "owners"
	p := pools.Pool{Name: pool, Scope: pools.Scope{Kind: pools.ScopeOrg, Org: "octo"}}
	start := workflowStarter(t, ctx, tc, queue)
	startOwnerWorkflows(t, ctx, tc, start, p, m)

	stale := runnerapi.RunnerName(pool, 9, 1)
	dir := &runnerDir{runners: []activities.RegisteredRunner{
		{ID: 1, Name: runnerapi.RunnerName(pool, 101, 1)},                  // a running job's runner: kept
		{ID: 2, Name: runnerapi.RunnerName(pool, 102, 1)},                  // the same job's earlier attempt: kept while it runs
		{ID: 3, Name: runnerapi.PersistentRunnerName(pool, m.provisioned)}, // registered by a provisioning: kept
		{ID: 4, Name: stale}, // nothing backs it: removed
	}}
	r := &activities.Reconciler{Dedalus: c, Temporal: tc, Pools: &pools.Config{Pools: []pools.Pool{p}}, Runners: dir, Grace: 0}
	env, reg := meteredActivityEnv(r)

	// A preview that cannot say which machine it owns: nothing is deleted,
	// the error is reported, stale runners are still removed.
	start("preview:recon/mute:1", "PreviewLifecycle", temporal.NewSearchAttributes(temporal.NewSearchAttributeKeyKeyword("DrydockPhase").ValueSet("ready")))
	require.Eventually(t, func() bool { return countWorkflows(t, ctx, tc, runningPreviews) >= 1 }, 10*time.Second, 100*time.Millisecond)
	res := reconcileOnce(t, env, r)
	assert.Equal(t, 5, res.Machines)
	assert.Equal(t, 4, res.Owned)
	assert.Equal(t, 1, res.Kept, "the orphan is kept while a preview cannot answer")
	assert.Equal(t, 1, res.Left)
	waitGauge(t, reg, activities.MetricUnownedMachines, "1")
	require.Eventually(t, func() bool { // the kept orphan runs, unused; the pool has no idle machine
		v, err := strconv.ParseFloat(gaugeWith(t, reg, activities.MetricAwakeUnused, "owner", "unowned"), 64)
		return err == nil && v > 0 && gaugeWith(t, reg, activities.MetricAwakeUnused, "owner", "pool:"+pool) == "0"
	}, 10*time.Second, 50*time.Millisecond)
	assert.Empty(t, res.DeletedMachines)
	require.NotEmpty(t, res.Errors)
	assert.Contains(t, res.Errors[0], "preview:recon/mute:1")
	assert.Equal(t, []string{stale}, res.RemovedRunners)
	assert.Equal(t, []int64{4}, dir.removed)

	// Once it is gone, only the orphan goes.
	require.NoError(t, tc.TerminateWorkflow(ctx, "preview:recon/mute:1", "", "test over"))
	require.Eventually(t, func() bool { return countWorkflows(t, ctx, tc, runningPreviews) == 0 }, 10*time.Second, 100*time.Millisecond)
	res = reconcileOnce(t, env, r)
	assert.Empty(t, res.Errors)
	assert.Equal(t, 4, res.Owned)
	assert.Zero(t, res.Kept)
	assert.Equal(t, []string{m.orphan}, res.DeletedMachines)
	waitGauge(t, reg, activities.MetricUnownedMachines, "0")
	require.Eventually(t, func() bool { // the orphan is gone
		return gaugeWith(t, reg, activities.MetricAwakeUnused, "owner", "unowned") == "0"
	}, 10*time.Second, 50*time.Millisecond)
	assertInUse(t, ctx, c, m.listedJob, m.queriedJob, m.provisioned, m.creating)
}

// gauge reads one gauge of a registry, whatever its labels ("" when absent).
func gauge(t *testing.T, reg *metrics.Registry, name string) string {
	t.Helper()
	fams, err := reg.Gatherer().Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return strconv.FormatFloat(f.GetMetric()[0].GetGauge().GetValue(), 'f', -1, 64)
		}
	}
	return ""
}

// gaugeWith reads the series of a gauge whose label has value ("" when absent).
func gaugeWith(t *testing.T, reg *metrics.Registry, name, label, value string) string {
	t.Helper()
	fams, err := reg.Gatherer().Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return strconv.FormatFloat(m.GetGauge().GetValue(), 'f', -1, 64)
				}
			}
		}
	}
	return ""
}
