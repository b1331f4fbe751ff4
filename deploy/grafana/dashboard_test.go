// Package grafana holds Drydock's Grafana dashboard (drydock.json); this
// test evaluates every one of its queries on a real Prometheus scraping a
// running Drydock.
package grafana

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/internal/testing/testenv"
)

// dashboard is the part of drydock.json this test reads.
type dashboard struct {
	Templating struct {
		List []struct {
			Name, Type string
			Query      any
		}
	}
	Panels []panel
}

type panel struct {
	ID         int
	Type       string
	Title      string
	Datasource struct{ UID string }
	Targets    []struct {
		Expr  string
		RefID string `json:"refId"`
	}
	Panels []panel // a collapsed row's
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("drydock.json")
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	return d
}

// queryPanels are the dashboard's panels that query (rows excluded, a
// collapsed row's panels included).
func (d dashboard) queryPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// The values Grafana would put in for its own variables and the
// dashboard's (each pool and repository variable's "All" is ".*").
var substitutes = map[string]string{
	"__rate_interval": "1m", "__interval": "15s", "__range": "10m",
	"pool": ".*", "repo": ".*",
}

var variable = regexp.MustCompile(`\$\{?(\w+)\}?`)

// substitute fills in the variables of expr; an unknown one is an error.
func substitute(expr string) (string, error) {
	var unknown []string
	out := variable.ReplaceAllStringFunc(expr, func(v string) string {
		name := variable.FindStringSubmatch(v)[1]
		s, ok := substitutes[name]
		if !ok {
			unknown = append(unknown, v)
		}
		return s
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variables %v", unknown)
	}
	return out, nil
}

// The dashboard is well formed: unique panel IDs, every panel on the
// datasource variable with at least one query, only known variables.
func TestDashboardIsWellFormed(t *testing.T) {
	d := readDashboard(t)
	ids := map[int]bool{}
	panels := d.queryPanels()
	require.NotEmpty(t, panels)
	for _, p := range panels {
		assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		assert.Equal(t, "${datasource}", p.Datasource.UID, p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			_, err := substitute(tg.Expr)
			assert.NoError(t, err, "%s: %s", p.Title, tg.Expr)
		}
	}
	var names []string
	for _, v := range d.Templating.List {
		names = append(names, v.Name)
	}
	assert.Equal(t, []string{"datasource", "pool", "repo"}, names)
}

// Every panel's query, run through a real Prometheus that scraped a whole
// Drydock through a demo run, answers without error and with series; so
// do the dashboard variables' label_values queries. The alert rules,
// loaded into the same Prometheus, evaluate without error, and the ones
// about the stack itself (a target down, no worker polling) stay quiet.
func TestDashboardQueriesAgainstARealPrometheus(t *testing.T) {
	server, _, err := testenv.Prometheus()
	require.NoError(t, err)
	cli, err := testenv.TemporalCLI()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	h := startStack(ctx, t, cli)
	prom := startPrometheus(ctx, t, server, h)
	runDemo(ctx, t, h)

	queries := dashboardQueries(t, readDashboard(t))
	// The alert about no worker polling reads this series; it must exist.
	queries[`sum(temporal_num_pollers{task_queue="drydock", poller_type="workflow_task"})`] = "alert DrydockNoWorkerPolling's series"

	// Scrapes and the worker's 15-second readings take a while to show
	// everything: ask until every query has series, then judge the last answers.
	failures := unanswered(ctx, prom, queries)
	for deadline := time.Now().Add(2 * time.Minute); len(failures) > 0 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Second)
		failures = unanswered(ctx, prom, queries)
	}
	for who, why := range failures {
		t.Errorf("%s: %s", who, why)
	}

	var rules []rule
	require.Eventually(t, func() bool {
		rules, err = prom.rules(ctx)
		return err == nil && len(rules) > 0
	}, time.Minute, time.Second, "the alert rules were never all evaluated: %v", err)
	for _, r := range rules {
		assert.Equal(t, "ok", r.Health, "alert %s: %s", r.Name, r.LastError)
		if r.Name == "DrydockTargetDown" || r.Name == "DrydockNoWorkerPolling" {
			assert.Equal(t, "inactive", r.State, "alert %s on a healthy stack", r.Name)
		}
	}
}

// dashboardQueries is every query the dashboard asks, by what asks it:
// each panel target's expression (variables substituted) and, for each
// label_values(metric, label) variable, a count by label of metric.
func dashboardQueries(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	queries := map[string]string{} // query -> what asks it
	for _, p := range d.queryPanels() {
		for _, tg := range p.Targets {
			q, err := substitute(tg.Expr)
			require.NoError(t, err)
			queries[q] = fmt.Sprintf("panel %q %s", p.Title, tg.RefID)
		}
	}
	for _, v := range d.Templating.List {
		if m := regexp.MustCompile(`^label_values\((\w+), *(\w+)\)$`).FindStringSubmatch(variableQuery(v.Query)); m != nil {
			queries[fmt.Sprintf("count by (%s) (%s)", m[2], m[1])] = "variable " + v.Name
		} else if v.Type == "query" {
			t.Errorf("variable %s: query %v is not label_values(metric, label)", v.Name, v.Query)
		}
	}
	return queries
}

// unanswered runs every query and returns, by who asks it, those that
// failed or returned no series.
func unanswered(ctx context.Context, prom promServer, queries map[string]string) map[string]string {
	out := map[string]string{}
	for q, who := range queries {
		if n, err := prom.series(ctx, q); err != nil || n == 0 {
			out[who] = fmt.Sprintf("%s: %d series, error %v", q, n, err)
		}
	}
	return out
}

// variableQuery is a query variable's query: a string (older dashboards)
// or an object with the string in "query".
func variableQuery(q any) string {
	if m, ok := q.(map[string]any); ok {
		q = m["query"]
	}
	s, _ := q.(string)
	return s
}

// promServer is the Prometheus under test, with its HTTP API.
type promServer struct{ *testenv.PromServer }

// startPrometheus runs Prometheus scraping the stack's three admin
// listeners every second, with deploy/prometheus/alerts.yml loaded.
func startPrometheus(ctx context.Context, t *testing.T, server string, h *harness.Harness) promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := os.ReadFile(filepath.Join("..", "prometheus", "alerts.yml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o644))
	cfg := "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [alerts.yml]\nscrape_configs:\n"
	for job, u := range map[string]string{"drydock-worker": h.WorkerAdminURL, "drydock-webhook": h.WebhookAdminURL, "drydock-router": h.RouterAdminURL} {
		pu, err := url.Parse(u)
		require.NoError(t, err)
		cfg += fmt.Sprintf("  - {job_name: %s, static_configs: [{targets: [%q]}]}\n", job, pu.Host)
	}
	p, err := testenv.StartPrometheus(ctx, server, dir, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.Log())
		}
		p.Stop()
	})
	return promServer{p}
}

// series runs an instant query and counts the series (or the scalar) it returns.
func (p promServer) series(ctx context.Context, query string) (int, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api(ctx, "/api/v1/query?query="+url.QueryEscape(query), &data); err != nil {
		return 0, err
	}
	if data.ResultType == "scalar" || data.ResultType == "string" {
		return 1, nil
	}
	var result []json.RawMessage
	if err := json.Unmarshal(data.Result, &result); err != nil {
		return 0, err
	}
	return len(result), nil
}

type rule struct {
	Name, State, Health string
	LastError           string `json:"lastError"`
}

// rules lists the loaded alerting rules once each has been evaluated.
func (p promServer) rules(ctx context.Context) ([]rule, error) {
	var data struct {
		Groups []struct {
			Rules []struct {
				rule
				LastEvaluation time.Time `json:"lastEvaluation"`
			}
		}
	}
	if err := p.api(ctx, "/api/v1/rules?type=alert", &data); err != nil {
		return nil, err
	}
	var out []rule
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			if r.LastEvaluation.IsZero() {
				return nil, fmt.Errorf("alert %s not evaluated yet", r.Name)
			}
			out = append(out, r.rule)
		}
	}
	return out, nil
}

// api GETs one Prometheus API path and decodes its data.
func (p promServer) api(ctx context.Context, path string, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s", path, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}
