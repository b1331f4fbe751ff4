// Package prometheus holds Drydock's Prometheus configuration (prometheus.yml,
// alerts.yml); this test checks it with the real promtool.
package prometheus

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/drydock-dev/drydock/internal/testing/testenv"
)

const runbookBase = "https://github.com/drydock-dev/drydock/blob/main/docs/operations.md#"

// alertRule is the part of a rule in alerts.yml this test reads.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readAlerts(t *testing.T) []alertRule {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("alerts.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &f))
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	require.NotEmpty(t, out)
	return out
}

func promtool(t *testing.T, args ...string) {
	t.Helper()
	_, tool, err := testenv.Prometheus()
	require.NoError(t, err)
	out, err := exec.Command(tool, args...).CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
}

// The rules and the scrape configuration are valid, and the unit tests of
// alerts_test.yml pass.
func TestPromtool(t *testing.T) {
	promtool(t, "check", "rules", "alerts.yml")
	promtool(t, "check", "config", "prometheus.yml")
	promtool(t, "test", "rules", "alerts_test.yml")
}

// Every alert is tested both ways in alerts_test.yml: at some evaluation it
// fires, at another it stays quiet.
func TestEveryAlertIsTestedBothWays(t *testing.T) {
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	b, err := os.ReadFile("alerts_test.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &f))
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range readAlerts(t) {
		assert.True(t, fires[a.Alert], "%s: no test case where it fires", a.Alert)
		assert.True(t, quiet[a.Alert], "%s: no test case where it stays quiet", a.Alert)
	}
}

// Every alert has a severity, a summary and a runbook_url pointing at its
// own section of docs/operations.md, which exists.
func TestEveryAlertHasARunbook(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	require.NoError(t, err)
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ +(\S.*)$`).FindAllStringSubmatch(string(doc), -1) {
		headings[strings.ToLower(strings.TrimSpace(m[1]))] = true
	}
	for _, a := range readAlerts(t) {
		assert.Contains(t, []string{"page", "warning"}, a.Labels["severity"], a.Alert)
		assert.NotEmpty(t, a.Annotations["summary"], a.Alert)
		assert.Equal(t, runbookBase+strings.ToLower(a.Alert), a.Annotations["runbook_url"], a.Alert)
		assert.True(t, headings[strings.ToLower(a.Alert)], "docs/operations.md has no section %q", a.Alert)
	}
}
