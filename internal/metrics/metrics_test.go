package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func scrape(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

// A Snapshot reads its source at most once per TTL, keeps its last figures
// when a read fails (counting the failure), and does not retry a failed
// read before the TTL is up.
func TestSnapshotCachesAndSurvivesFailures(t *testing.T) {
	reg := New("test")
	var reads atomic.Int32
	var fail atomic.Bool
	value := 3.0
	NewSnapshot(reg, "things", "Things by kind.", []string{"kind"}, 200*time.Millisecond, nil, func(context.Context) ([]Sample, error) {
		reads.Add(1)
		if fail.Load() {
			return nil, errors.New("temporal is slow")
		}
		return []Sample{{Labels: []string{"a"}, Value: value}}, nil
	})
	h := reg.Handler()
	_, body := scrape(t, h, "/metrics")
	assert.Contains(t, body, `drydock_things{kind="a"} 3`)
	scrape(t, h, "/metrics")
	assert.EqualValues(t, 1, reads.Load(), "the second scrape within the TTL reuses the reading")

	fail.Store(true)
	time.Sleep(250 * time.Millisecond)
	_, body = scrape(t, h, "/metrics")
	assert.Contains(t, body, `drydock_things{kind="a"} 3`, "the last good figures")
	// Collectors are gathered concurrently: the failure shows from the next scrape on.
	_, body = scrape(t, h, "/metrics")
	assert.Contains(t, body, `drydock_metrics_read_errors_total{metric="drydock_things"} 1`)
	assert.EqualValues(t, 2, reads.Load(), "a failed read is not retried before the TTL is up")

	fail.Store(false)
	value = 5
	time.Sleep(250 * time.Millisecond)
	_, body = scrape(t, h, "/metrics")
	assert.Contains(t, body, `drydock_things{kind="a"} 5`)
}

// A read that hangs is cut at the read timeout, so a scrape still answers.
func TestSnapshotReadIsBounded(t *testing.T) {
	old := readTimeout
	readTimeout = 100 * time.Millisecond
	defer func() { readTimeout = old }()
	reg := New("test")
	NewSnapshot(reg, "slow", "Slow.", nil, time.Minute, nil, func(ctx context.Context) ([]Sample, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	start := time.Now()
	code, _ := scrape(t, reg.Handler(), "/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// /readyz follows the check and turns 503 for good once the process stops;
// /healthz stays 200; /metrics serves the registry.
func TestAdminHealthAndReadiness(t *testing.T) {
	reg := New("test")
	var down atomic.Bool
	health := NewHealth(func(context.Context) error {
		if down.Load() {
			return errors.New("temporal unreachable")
		}
		return nil
	})
	h := reg.Admin(health)
	code, _ := scrape(t, h, "/readyz")
	assert.Equal(t, http.StatusOK, code)
	down.Store(true)
	code, body := scrape(t, h, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "temporal unreachable")
	down.Store(false)
	health.Stopping()
	code, body = scrape(t, h, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "shutting down")
	code, _ = scrape(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	code, body = scrape(t, h, "/metrics")
	require.Equal(t, http.StatusOK, code)
	assert.True(t, strings.Contains(body, `drydock_build_info{binary="test"} 1`))
}

// Workflow metrics reach the registry through the Temporal handler, with
// readable label values (owner/repo keeps its '/' and '-').
func TestTemporalHandlerWritesIntoTheRegistry(t *testing.T) {
	reg := New("test")
	th := reg.Temporal()
	th.WithTags(map[string]string{"repo": "octo-org/hello.world"}).Counter("drydock_things_total").Inc(3)
	th.Timer("drydock_wait_seconds").Record(1500 * time.Millisecond)
	reg.Close() // flushes the tally scope
	_, body := scrape(t, reg.Handler(), "/metrics")
	assert.Contains(t, body, `drydock_things_total{repo="octo-org/hello.world"} 3`)
	assert.Contains(t, body, `drydock_wait_seconds_count 1`)
	assert.Contains(t, body, `drydock_wait_seconds_sum 1.5`)
}

// Quota refusals are counted by operation beside the errors; a component
// built without metrics (nil) ignores both.
func TestDedalusQuotaErrors(t *testing.T) {
	reg := New("test")
	m := NewDedalus(reg)
	m.Error("POST /v1/machines", "QUOTA_EXCEEDED")
	m.Quota("POST /v1/machines")
	_, body := scrape(t, reg.Handler(), "/metrics")
	assert.Contains(t, body, `drydock_dedalus_quota_errors_total{operation="POST /v1/machines"} 1`)
	assert.Contains(t, body, `drydock_dedalus_api_errors_total{code="QUOTA_EXCEEDED",operation="POST /v1/machines"} 1`)
	var none *Dedalus
	none.Quota("POST /v1/machines")
	none.Error("POST /v1/machines", "500")
}
