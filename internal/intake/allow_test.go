package intake_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/metrics"
)

func TestParseAllowlist(t *testing.T) {
	for _, tc := range []struct {
		entries []string
		err     string // "" = valid
	}{
		{nil, "DRYDOCK_ALLOWED_OWNERS is empty"},
		{[]string{}, "DRYDOCK_ALLOWED_OWNERS is empty"},
		{[]string{"  "}, "DRYDOCK_ALLOWED_OWNERS is empty"},
		{[]string{"acme", ""}, "empty entry"},
		{[]string{"acme", "*"}, "cannot be combined"},
		{[]string{"acme/shop"}, "is not a GitHub owner login"},
		{[]string{"-acme"}, "is not a GitHub owner login"},
		{[]string{"a--b"}, "is not a GitHub owner login"},
		{[]string{"installation:"}, "installation:<numeric"},
		{[]string{"installation:-3"}, "installation:<numeric"},
		{[]string{"installation:12x"}, "installation:<numeric"},
		{[]string{"*"}, ""},
		{[]string{"Acme", " octo-org ", "installation:1234", "Installation:99"}, ""},
	} {
		a, err := intake.ParseAllowlist(tc.entries)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, "%q", tc.entries)
			assert.ErrorContains(t, err, "DRYDOCK_ALLOWED_OWNERS", "the error names the variable")
			continue
		}
		require.NoError(t, err, "%q", tc.entries)
		assert.NotNil(t, a)
	}
	a := intake.AllowOwners("Acme", "installation:1234")
	assert.True(t, a.Allows("acme", 0), "owners compare case-insensitively")
	assert.True(t, a.Allows("ACME", 0))
	assert.True(t, a.Allows("someone-else", 1234), "a listed installation is enough")
	assert.False(t, a.Allows("someone-else", 1235))
	assert.False(t, a.Allows("", 0))
	assert.False(t, a.Allows("acme-corp", 0), "no prefix match")
	assert.True(t, intake.AllowEveryone().Allows("anyone", 0))
	assert.False(t, (*intake.Allowlist)(nil).Allows("acme", 1), "no list allows nobody")
	assert.Equal(t, "Acme,installation:1234", a.String())
}

// Without an allow-list the handler is not built: fail closed.
func TestAllowlistIsRequired(t *testing.T) {
	_, err := intake.New(intake.Options{Secret: secret})
	assert.ErrorContains(t, err, "DRYDOCK_ALLOWED_OWNERS is required")
}

// countingRouter records the events it was given.
type countingRouter struct {
	mu     sync.Mutex
	events []string
}

func (c *countingRouter) Route(_ context.Context, ev intake.Event) (intake.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, ev.Name+"/"+ev.Action)
	if ev.Name == "ping" {
		return intake.Result{Status: http.StatusOK, Reason: "pong", Code: "ping"}, nil
	}
	return intake.Result{Status: http.StatusAccepted, Reason: "started", WorkflowID: "w", Accepted: true}, nil
}

// routed is what was routed so far.
func (c *countingRouter) routed() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.events...)
}

// openedBy is the opened delivery of the example pull request in a
// repository of owner, sent to installation (0: none).
func openedBy(t *testing.T, owner string, installation int64) []byte {
	p := examplePR()
	p.Owner, p.InstallationID = owner, installation
	b, err := ghfixture.PullRequest("opened", p)
	require.NoError(t, err)
	return b
}

// queuedFor is the queued delivery of the example job in a repository of
// the organization owner, sent to installation (0: none).
func queuedFor(t *testing.T, owner string, installation int64) []byte {
	j := exampleJob()
	j.Owner, j.Org, j.InstallationID = owner, owner, installation
	b, err := ghfixture.WorkflowJob("queued", j)
	require.NoError(t, err)
	return b
}

// Every event of an owner or installation that is not on the list is
// answered 200 owner_not_allowed and reaches no router: no preview, no
// runner job, whatever the event; listed owners (any case) and listed
// installations get through.
func TestOwnerNotAllowedReachesNoRouter(t *testing.T) {
	reg := metrics.New("webhook-allow-test")
	rt := &countingRouter{}
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowOwners("acme", "installation:77"), Router: rt,
		Metrics: metrics.NewWebhook(reg), Logger: quietLogger()})
	require.NoError(t, err)

	pr := func(owner string, installation int64) []byte { return openedBy(t, owner, installation) }
	job := func(owner string, installation int64) []byte { return queuedFor(t, owner, installation) }
	refused := []struct {
		event string
		body  []byte
		want  string
	}{
		{"pull_request", pr("Evil", 0), `repository owner "Evil" is not allowed`},
		{"pull_request", pr("evil", 4242), `repository owner "evil" (installation 4242) is not allowed`},
		{"workflow_job", job("evil", 0), `repository owner "evil" is not allowed`},
		{"workflow_job", job("acme-corp", 78), "acme-corp"},
		{"issues", []byte(`{"action":"opened","repository":{"owner":{"login":"evil"}}}`), "evil"},
		{"installation", []byte(`{"action":"created","installation":{"id":5}}`), "installation 5 is not allowed"},
		{"pull_request", []byte(`{"action":"opened"}`), "without a repository owner or installation"},
		{"ping", ghfixture.Ping("evil", "repo", 1), `"evil"`},
	}
	for _, tc := range refused {
		resp, out := post(t, h, tc.event, tc.body, nil)
		assert.Equal(t, http.StatusOK, resp.Code, tc.want)
		assert.Contains(t, out["reason"], "owner_not_allowed: ", tc.want)
		assert.Contains(t, out["reason"], tc.want)
		assert.Contains(t, out["reason"], "DRYDOCK_ALLOWED_OWNERS")
	}
	assert.Empty(t, rt.routed(), "no refused event reached a router")

	for _, tc := range []struct {
		event string
		body  []byte
	}{
		{"pull_request", pr("ACME", 0)},
		{"workflow_job", job("Acme", 0)},
		{"workflow_job", job("someone", 77)},
		{"ping", []byte(`{"zen":"hi","hook_id":1}`)}, // an App's or organization's ping: nothing to judge, nothing done
	} {
		resp, _ := post(t, h, tc.event, tc.body, func(r *http.Request) { r.Header.Set("X-GitHub-Delivery", "") })
		assert.Less(t, resp.Code, 300, tc.event)
	}
	assert.Equal(t, []string{"pull_request/opened", "workflow_job/queued", "workflow_job/queued", "ping/"}, rt.routed())

	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	assert.Contains(t, text, `drydock_webhook_deliveries_total{action="opened",event="pull_request",outcome="ignored",reason="owner_not_allowed"} 3`)
	assert.Contains(t, text, `drydock_webhook_deliveries_total{action="queued",event="workflow_job",outcome="ignored",reason="owner_not_allowed"} 2`)
	assert.NotContains(t, text, "evil", "owners are not metric labels")
}
