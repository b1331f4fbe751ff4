package intake_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/metrics"
)

// Every answer is counted by event, action, outcome and reason; an
// unauthenticated delivery's event header is not trusted as a label.
func TestDeliveriesCountedByOutcome(t *testing.T) {
	const secret = "s3cret"
	reg := metrics.New("webhook-test")
	mux := intake.NewMux()
	mux.Handle("pull_request", intake.RouterFunc(func(_ context.Context, ev intake.Event) (intake.Result, error) {
		switch ev.Action {
		case "opened":
			return intake.Result{Status: http.StatusAccepted, Reason: "preview requested", WorkflowID: "w", Accepted: true}, nil
		case "edited":
			return intake.Result{Status: http.StatusOK, Reason: "does not affect previews", Code: "action_not_handled"}, nil
		}
		return intake.Result{}, errors.New("temporal is down")
	}))
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: mux, Metrics: metrics.NewWebhook(reg)})
	require.NoError(t, err)

	send := func(event, body string, sign bool, contentType string) int {
		req := httptest.NewRequest("POST", "/webhooks/github", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-GitHub-Event", event)
		if sign {
			req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(secret), []byte(body)))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	assert.Equal(t, 202, send("pull_request", `{"action":"opened"}`, true, "application/json"))
	assert.Equal(t, 200, send("pull_request", `{"action":"edited"}`, true, "application/json"))
	assert.Equal(t, 503, send("pull_request", `{"action":"closed"}`, true, "application/json"))
	assert.Equal(t, 200, send("ping", `{"zen":"hi"}`, true, "application/json"))
	assert.Equal(t, 401, send("attacker-chosen-"+strings.Repeat("x", 20), `{"action":"opened"}`, false, "application/json"))
	assert.Equal(t, 400, send("pull_request", `{"action":"opened"}`, true, "application/x-www-form-urlencoded"))
	assert.Equal(t, 400, send("pull_request", `{"action":`, true, "application/json"))

	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{
		`drydock_webhook_deliveries_total{action="opened",event="pull_request",outcome="accepted",reason=""} 1`,
		`drydock_webhook_deliveries_total{action="edited",event="pull_request",outcome="ignored",reason="action_not_handled"} 1`,
		`drydock_webhook_deliveries_total{action="closed",event="pull_request",outcome="failed",reason="temporal_unavailable"} 1`,
		`drydock_webhook_deliveries_total{action="",event="ping",outcome="ignored",reason="ping"} 1`,
		`drydock_webhook_deliveries_total{action="",event="unauthenticated",outcome="rejected",reason="bad_signature"} 1`,
		`drydock_webhook_deliveries_total{action="",event="pull_request",outcome="rejected",reason="content_type"} 1`,
		`drydock_webhook_deliveries_total{action="",event="pull_request",outcome="rejected",reason="malformed_json"} 1`,
		`drydock_webhook_delivery_duration_seconds_count{event="pull_request",outcome="accepted"} 1`,
	} {
		assert.Contains(t, text, want)
	}
	assert.NotContains(t, text, "attacker-chosen")
}
