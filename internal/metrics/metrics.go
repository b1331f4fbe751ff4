// Package metrics is every Drydock binary's Prometheus registry: the
// Temporal SDK's metrics (through the SDK's tally integration) and Drydock's
// own, with units in their names, served at /metrics.
//
// Each component's metrics are a struct built on a Registry (Webhook,
// Router, Worker, Dedalus, GitHub). Their methods are safe on a nil
// receiver, so a component built without metrics (tests, tools) needs no
// checks at its call sites.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// Namespace prefixes every Drydock metric.
const Namespace = "drydock"

// Latency buckets, in seconds.
var (
	// fastBuckets: in-process work and one network hop (0.1 ms .. 2.5 s).
	fastBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	// wakeBuckets: a machine or preview wake (10 ms .. 2 min).
	wakeBuckets = []float64{.01, .025, .05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120}
	// addedBuckets: the router's own cost when warm, the wake wait when cold (0.1 ms .. 30 s).
	addedBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// Registry is one process's metrics.
type Registry struct {
	reg *prometheus.Registry

	once    sync.Once
	handler client.MetricsHandler
	closer  func()

	errsOnce sync.Once
	errs     *prometheus.CounterVec
}

// readErrors is drydock_metrics_read_errors_total, shared by the
// registry's Snapshots.
func (r *Registry) readErrors() *prometheus.CounterVec {
	r.errsOnce.Do(func() {
		r.errs = counterVec(r.reg, "metrics_read_errors_total", "Failed reads of scrape-time figures from Temporal, by metric.", "metric")
	})
	return r.errs
}

// New returns a registry with the Go runtime and process collectors and
// drydock_build_info{binary} registered.
func New(binary string) *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info", Help: "Always 1; labels name the binary.",
	}, []string{"binary"})
	info.WithLabelValues(binary).Set(1)
	reg.MustRegister(info)
	return &Registry{reg: reg}
}

// Registerer is where components register their collectors.
func (r *Registry) Registerer() prometheus.Registerer { return r.reg }

// Gatherer reads the registry (tests).
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the registry in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Temporal is the Temporal SDK metrics handler (client.Options.MetricsHandler)
// writing into this registry: the SDK's own metrics (temporal_*) and those
// workflows emit through workflow.GetMetricsHandler (drydock_*). Timers
// become histograms in seconds. The tally scope reports every second.
func (r *Registry) Temporal() client.MetricsHandler {
	r.once.Do(func() {
		reporter := tallyprom.NewReporter(tallyprom.Options{
			Registerer:              r.reg,
			DefaultTimerType:        tallyprom.HistogramTimerType,
			DefaultHistogramBuckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
			// A name registered twice with other labels is a programming
			// error; dropping that one series beats crashing the worker.
			OnRegisterError: func(error) {},
		})
		scope, closer := tally.NewRootScope(tally.ScopeOptions{
			CachedReporter:  reporter,
			Separator:       tallyprom.DefaultSeparator,
			SanitizeOptions: &sanitize,
		}, time.Second)
		r.handler = sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope))
		r.closer = func() { _ = closer.Close() }
	})
	return r.handler
}

// sanitize keeps names and label keys to what Prometheus accepts, as the
// SDK's PrometheusSanitizeOptions do, but leaves label values readable:
// owner/repo, workflow types and task queues keep their '-', '/', '.', ':'.
var sanitize = tally.SanitizeOptions{
	NameCharacters: sdktally.PrometheusSanitizeOptions.NameCharacters,
	KeyCharacters:  sdktally.PrometheusSanitizeOptions.KeyCharacters,
	ValueCharacters: tally.ValidCharacters{
		Ranges:     tally.AlphanumericRange,
		Characters: []rune{'_', '-', '.', '/', ':', '@', '#', '+', '=', ','},
	},
	ReplacementCharacter: tally.DefaultReplacementCharacter,
}

// Close flushes the Temporal scope.
func (r *Registry) Close() {
	if r.closer != nil {
		r.closer()
	}
}

func counterVec(reg prometheus.Registerer, name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	reg.MustRegister(c)
	return c
}

func gaugeVec(reg prometheus.Registerer, name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	reg.MustRegister(g)
	return g
}

func histogramVec(reg prometheus.Registerer, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	reg.MustRegister(h)
	return h
}
