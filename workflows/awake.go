package workflows

import (
	"strconv"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// AwakeMeter accounts a machine's running time from the machine states the
// workflows observe; see runnerapi.AwakeMeter for the rule. (It lives in
// runnerapi because the pool's inventory carries one per machine.)
type AwakeMeter = runnerapi.AwakeMeter

// Metrics the workflows emit through workflow.GetMetricsHandler, which
// drops emissions while a workflow replays. Every emission of one name
// carries the same tag keys (besides the SDK's own).
const (
	// MetricPreviewAwake counts the seconds preview machines were awake
	// (counter; tags repo = owner/repo in lower case, pr = the number).
	MetricPreviewAwake = "drydock_preview_awake_seconds_total"
	// MetricPoolAwake counts the seconds a pool's machines were awake
	// (counter; tag pool).
	MetricPoolAwake = "drydock_pool_awake_seconds_total"
	// MetricRunnerLeases counts a pool's leases by affinity (counter; tags
	// pool, affinity = same_repo: the machine last ran the job's
	// repository, its caches hot; fresh: it never ran a job; other: it ran
	// another repository's, isolation shared only). The cache-affinity hit
	// rate is same_repo over all.
	MetricRunnerLeases = "drydock_runner_leases_total"
	// MetricDispatchLatency is the time from a runner job's queued webhook
	// (its workflow's start) to the wake of the machine leased to it
	// (timer; tag pool). Recorded once per job, at its first wake.
	MetricDispatchLatency = "drydock_runner_dispatch_latency_seconds"
	// MetricJobQueue is a GitHub Actions job's queue time: GitHub's
	// created_at to the started_at of its in_progress delivery (timer; tag
	// pool). Recorded once per job, by its RunnerJob, however many webhook
	// replicas the redeliveries reach.
	MetricJobQueue = "drydock_runner_job_queue_seconds"
	// MetricPreviewFailures counts failed preview deploys (counter; tag
	// repo = owner/repo in lower case), one per deploy that ended failed.
	MetricPreviewFailures = "drydock_preview_failures_total"
)

// observeRef folds a machine activity's result into a meter: the machine's
// state before the call (wakes and deletes read it first), then after.
// Results of workers older than the awake accounting carry no transition
// times: the workflow's clock stands in. It returns the awake time closed.
func observeRef(m *AwakeMeter, ref activities.MachineRef, now time.Time) time.Duration {
	closed := m.Observe(ref.WasPhase, orNow(ref.WasTransitionAt, now))
	return closed + m.Observe(ref.Phase, orNow(ref.TransitionAt, now))
}

// observeAt folds in one phase seen at a time (zero: now).
func observeAt(m *AwakeMeter, phase dedalus.MachinePhase, at, now time.Time) time.Duration {
	return m.Observe(phase, orNow(at, now))
}

func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// countAwake brings a whole-seconds counter up to closed, the awake time of
// every closed interval so far: SDK counters take integers, so the seconds
// emitted are recorded in *counted (workflow state, carried across
// continue-as-new) and the fraction left waits until it adds up to a
// second. The counter only follows closed intervals: an open one may yet
// close earlier than now (a wake finds that autosleep put the machine to
// sleep long ago), and a counter cannot go down.
func countAwake(c client.MetricsCounter, closed time.Duration, counted *int64) {
	if due := int64(closed/time.Second) - *counted; due > 0 {
		c.Inc(due)
		*counted += due
	}
}

// previewAwakeCounter is MetricPreviewAwake for one pull request.
func previewAwakeCounter(ctx workflow.Context, owner, repo string, number int) client.MetricsCounter {
	return workflow.GetMetricsHandler(ctx).WithTags(map[string]string{
		"repo": RepoKey(owner, repo), "pr": strconv.Itoa(number),
	}).Counter(MetricPreviewAwake)
}

// poolAwakeCounter is MetricPoolAwake for one pool.
func poolAwakeCounter(ctx workflow.Context, pool string) client.MetricsCounter {
	return workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"pool": pool}).Counter(MetricPoolAwake)
}

// poolLeaseCounter is MetricRunnerLeases for one pool, by affinity.
func poolLeaseCounter(ctx workflow.Context, pool string) func(affinity string) client.MetricsCounter {
	h := workflow.GetMetricsHandler(ctx)
	return func(affinity string) client.MetricsCounter {
		return h.WithTags(map[string]string{"pool": pool, "affinity": affinity}).Counter(MetricRunnerLeases)
	}
}
