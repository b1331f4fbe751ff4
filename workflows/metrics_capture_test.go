package workflows

import (
	"maps"
	"slices"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
)

// emission is one metric emission a capture recorded.
type emission struct {
	kind  string // counter, gauge, timer
	name  string
	tags  map[string]string
	count int64
	gauge float64
	dur   time.Duration
}

// metricsCapture is a client.MetricsHandler that records every emission,
// the SDK's own included (tests filter by name).
type metricsCapture struct {
	mu   *sync.Mutex
	log  *[]emission
	tags map[string]string
}

var _ client.MetricsHandler = (*metricsCapture)(nil)

func newMetricsCapture() *metricsCapture {
	return &metricsCapture{mu: &sync.Mutex{}, log: &[]emission{}, tags: map[string]string{}}
}

func (h *metricsCapture) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	maps.Copy(merged, tags)
	return &metricsCapture{mu: h.mu, log: h.log, tags: merged}
}

func (h *metricsCapture) record(e emission) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.tags = maps.Clone(h.tags)
	*h.log = append(*h.log, e)
}

func (h *metricsCapture) Counter(name string) client.MetricsCounter {
	return counterFunc(func(n int64) { h.record(emission{kind: "counter", name: name, count: n}) })
}

func (h *metricsCapture) Gauge(name string) client.MetricsGauge {
	return gaugeFunc(func(v float64) { h.record(emission{kind: "gauge", name: name, gauge: v}) })
}

func (h *metricsCapture) Timer(name string) client.MetricsTimer {
	return timerFunc(func(d time.Duration) { h.record(emission{kind: "timer", name: name, dur: d}) })
}

// named returns the emissions of one metric, in order.
func (h *metricsCapture) named(name string) []emission {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []emission
	for _, e := range *h.log {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

// sum adds up a counter's increments.
func (h *metricsCapture) sum(name string) int64 {
	var n int64
	for _, e := range h.named(name) {
		n += e.count
	}
	return n
}

// tagKeys returns the distinct sorted tag key sets one metric was emitted with.
func (h *metricsCapture) tagKeys(name string) [][]string {
	var sets [][]string
	for _, e := range h.named(name) {
		keys := slices.Sorted(maps.Keys(e.tags))
		if !slices.ContainsFunc(sets, func(s []string) bool { return slices.Equal(s, keys) }) {
			sets = append(sets, keys)
		}
	}
	return sets
}

type counterFunc func(int64)

func (f counterFunc) Inc(n int64) { f(n) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

// newWorkflowEnv is a test workflow environment whose metrics go to m, if
// set.
func newWorkflowEnv(m *metricsCapture) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	if m != nil {
		s.SetMetricsHandler(m)
	}
	return s.NewTestWorkflowEnvironment()
}
