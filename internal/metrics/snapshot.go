package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sample is one series of a Snapshot: label values in the Snapshot's label
// order, and the value.
type Sample struct {
	Labels []string
	Value  float64
}

// Snapshot is a gauge family read from the system of record (Temporal) when
// scraped, at most once per TTL; the reading is shared by every scrape in
// between. Every worker replica reports the same figures, so aggregate with
// max(), never sum(). A failed read keeps the last good figures and counts
// drydock_metrics_read_errors_total{metric}.
type Snapshot struct {
	desc *prometheus.Desc
	name string
	read func(context.Context) ([]Sample, error)
	ttl  time.Duration
	log  *slog.Logger
	errs *prometheus.CounterVec

	mu   sync.Mutex
	at   time.Time
	last []Sample
}

// readTimeout bounds one read of a Snapshot.
var readTimeout = 3 * time.Second

// NewSnapshot registers a Snapshot named drydock_<name>.
func NewSnapshot(r *Registry, name, help string, labels []string, ttl time.Duration, log *slog.Logger, read func(context.Context) ([]Sample, error)) *Snapshot {
	if log == nil {
		log = slog.Default()
	}
	s := &Snapshot{
		desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil),
		name: Namespace + "_" + name, read: read, ttl: ttl, log: log, errs: r.readErrors(),
	}
	r.Registerer().MustRegister(s)
	return s
}

// Describe implements prometheus.Collector.
func (s *Snapshot) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

// Collect implements prometheus.Collector.
func (s *Snapshot) Collect(ch chan<- prometheus.Metric) {
	for _, smp := range s.samples() {
		m, err := prometheus.NewConstMetric(s.desc, prometheus.GaugeValue, smp.Value, smp.Labels...)
		if err == nil {
			ch <- m
		}
	}
}

func (s *Snapshot) samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.at.IsZero() && time.Since(s.at) < s.ttl {
		return s.last
	}
	// A scrape must answer within Prometheus's timeout even when Temporal is
	// slow: the read is bounded, and a failed one is not retried before the
	// TTL is up (the SDK's own figures are what tell a slow Temporal apart).
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	got, err := s.read(ctx)
	s.at = time.Now()
	if err != nil {
		s.errs.WithLabelValues(s.name).Inc()
		s.log.Warn("metrics: read failed; reporting the last figures", "metric", s.name, "err", err)
		return s.last
	}
	s.last = got
	return got
}
