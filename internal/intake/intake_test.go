package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
)

const secret = "It's a Secret to Everybody"

type recorder struct {
	events []intake.Event
	err    error
}

func (r *recorder) Route(ctx context.Context, ev intake.Event) (intake.Result, error) {
	if r.err != nil {
		return intake.Result{}, r.err
	}
	r.events = append(r.events, ev)
	return intake.Acknowledge{}.Route(ctx, ev)
}

func post(t *testing.T, h http.Handler, event string, body []byte, mutate func(*http.Request)) (*httptest.ResponseRecorder, map[string]string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/webhooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", "d-1")
	req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(secret), body))
	if mutate != nil {
		mutate(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec, out
}

func newHandler(t *testing.T, r intake.Router) *intake.Handler {
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowOwners("acme", "installation:4242"), Router: r})
	require.NoError(t, err)
	return h
}

func TestSignatureMatchesGitHubsDocumentedExample(t *testing.T) {
	// From GitHub's "Validating webhook deliveries" documentation.
	got := intake.SignatureHeader([]byte(secret), []byte("Hello, World!"))
	assert.Equal(t, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", got)
}

func TestFixturesAreAcceptedAndRouted(t *testing.T) {
	rec := &recorder{}
	h := newHandler(t, rec)
	installation, err := ghfixture.Installation("created", 4242, "Acme", "Store-Front")
	require.NoError(t, err)
	for _, tc := range []struct {
		event  string
		body   []byte
		reason string
	}{
		{"ping", ghfixture.Ping("Acme", "Store-Front", 1), "pong"},
		{"pull_request", payload(t, "opened"), `event "pull_request" action "opened" is not handled by Drydock`},
		{"workflow_job", jobPayload(t, "queued"), `event "workflow_job" action "queued" is not handled by Drydock`},
		{"installation", installation, `event "installation" action "created" is not handled by Drydock`},
	} {
		resp, body := post(t, h, tc.event, tc.body, nil)
		assert.Equal(t, http.StatusOK, resp.Code, tc.event)
		assert.Equal(t, tc.reason, body["reason"], tc.event)
	}
	require.Len(t, rec.events, 4)
	assert.Equal(t, "opened", rec.events[1].Action)
	assert.Equal(t, "d-1", rec.events[1].DeliveryID)
}

func TestRejectedInputReachesNoRouter(t *testing.T) {
	body := payload(t, "opened")
	cases := []struct {
		name   string
		body   []byte
		mutate func(*http.Request)
		status int
		reason string
	}{
		{"missing signature", body, func(r *http.Request) { r.Header.Del("X-Hub-Signature-256") }, 401, "missing X-Hub-Signature-256"},
		{"wrong signature", body, func(r *http.Request) {
			r.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte("other"), body))
		}, 401, "signature does not match"},
		{"sha1 only", body, func(r *http.Request) {
			r.Header.Del("X-Hub-Signature-256")
			r.Header.Set("X-Hub-Signature", "sha1=0000")
		}, 401, "SHA-1 signatures are not accepted"},
		{"not hex", body, func(r *http.Request) { r.Header.Set("X-Hub-Signature-256", "sha256=zz") }, 401, "not hex"},
		{"form encoded", body, func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }, 400, "application/json"},
		{"malformed JSON", []byte(`{"action":`), nil, 400, "malformed JSON"},
		{"no event header", body, func(r *http.Request) { r.Header.Del("X-GitHub-Event") }, 400, "X-GitHub-Event"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			resp, out := post(t, newHandler(t, rec), "pull_request", tc.body, tc.mutate)
			assert.Equal(t, tc.status, resp.Code)
			assert.Contains(t, out["reason"], tc.reason)
			assert.Empty(t, rec.events, "nothing routed")
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	rec := &recorder{}
	h := newHandler(t, rec)
	big := []byte(`{"a":"` + strings.Repeat("x", intake.MaxBody) + `"}`)
	resp, _ := post(t, h, "pull_request", big, nil)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.Code)
	// Also without a Content-Length (chunked): the reader is bounded.
	resp, _ = post(t, h, "pull_request", big, func(r *http.Request) { r.ContentLength = -1 })
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.Code)
	assert.Empty(t, rec.events)
}

func TestRouterFailureAnswers503(t *testing.T) {
	h := newHandler(t, &recorder{err: errors.New("temporal unreachable")})
	resp, out := post(t, h, "ping", ghfixture.Ping("Acme", "Store-Front", 1), nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.Code)
	assert.NotContains(t, out["reason"], "unreachable", "internal errors are logged, not echoed")
}

func TestSecretRequiredUnlessInsecure(t *testing.T) {
	_, err := intake.New(intake.Options{Allowed: intake.AllowEveryone()})
	assert.ErrorContains(t, err, "GITHUB_WEBHOOK_SECRET")
	h, err := intake.New(intake.Options{Insecure: true, Allowed: intake.AllowEveryone()})
	require.NoError(t, err)
	resp, _ := post(t, h, "ping", []byte(`{}`), func(r *http.Request) { r.Header.Del("X-Hub-Signature-256") })
	assert.Equal(t, http.StatusOK, resp.Code)
}

type health struct{ err error }

func (h health) Ready(context.Context) error { return h.err }

func TestHealthAndReadiness(t *testing.T) {
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Health: health{errors.New("connection refused")}})
	require.NoError(t, err)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/nope": 404} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Equal(t, want, rec.Code, path)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/webhooks/github", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}
