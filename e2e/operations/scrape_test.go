package operations

import (
	"bytes"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testing/harness"
)

// scrape is one /metrics answer, by metric family name.
type scrape map[string]*dto.MetricFamily

func scrapeAll(t *testing.T, h *harness.Harness) map[string]scrape {
	return map[string]scrape{
		"worker": scrapeURL(t, h.WorkerAdminURL), "webhook": scrapeURL(t, h.WebhookAdminURL), "router": scrapeURL(t, h.RouterAdminURL),
	}
}

func scrapeURL(t *testing.T, base string) scrape {
	t.Helper()
	code, body := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err)
	return fams
}

// value sums the series of name whose labels include the given pairs: the
// value of counters and gauges, the sample count of histograms.
func (s scrape) value(name string, pairs ...string) float64 {
	var v float64
	s.each(name, pairs, func(m *dto.Metric) {
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	})
	return v
}

// sum is the sum of a histogram's samples (seconds, for latencies).
func (s scrape) sum(name string, pairs ...string) float64 {
	var v float64
	s.each(name, pairs, func(m *dto.Metric) { v += m.GetHistogram().GetSampleSum() })
	return v
}

func (s scrape) each(name string, pairs []string, f func(*dto.Metric)) {
	fam := s[name]
	if fam == nil {
		return
	}
next:
	for _, m := range fam.Metric {
		for i := 0; i+1 < len(pairs); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		f(m)
	}
}
