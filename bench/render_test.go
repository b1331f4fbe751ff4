package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRenderTable(t *testing.T) {
	r := Report{
		Date: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), Commit: "abc1234",
		Machine: Machine{CPU: "AMD EPYC", Cores: 2, MemGiB: 24, Kernel: "6.1", Go: "go1.26"},
		Scale:   1,
		Scenarios: []Result{
			{Name: "a", Title: "1. Intake", Rows: []Row{
				{Metric: "deliveries/s", Value: 812.4, Unit: "/s", Baseline: F(850), Ratio: F(0.956), Goal: "≥ 0.9", Met: B(true)},
				{Metric: "p99", Value: 12.25, Unit: "ms", Note: "at half rate"},
			}},
			{Name: "b", Title: "2. Broken", Error: "dev server | died"},
		},
	}
	out := Render(r)
	assert.Contains(t, out, "2026-11-24 10:00 UTC on AMD EPYC (2 cores, 24 GiB, 6.1, go1.26), commit abc1234")
	assert.Contains(t, out, "| 1. Intake | deliveries/s | 812 /s | 850 /s | 0.96 | ≥ 0.9 ✓ |")
	assert.Contains(t, out, "|  | p99 (at half rate) | 12 ms |  |  |  |")
	assert.Contains(t, out, "| 2. Broken | **failed** | dev server / died | | | |", "a pipe in an error does not break the table")
}

func TestUpdateDocReplacesOnlyBetweenMarkers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "performance.md")
	require.NoError(t, os.WriteFile(p, []byte("intro\n"+beginMarker+"\nold table\n"+endMarker+"\noutro\n"), 0o644))
	require.NoError(t, updateDoc(p, "new table"))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "intro\n"+beginMarker+"\nnew table\n"+endMarker+"\noutro\n", string(b))

	require.NoError(t, os.WriteFile(p, []byte("no markers\n"), 0o644))
	err = updateDoc(p, "x")
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "no bench markers"))
}

// make bench writes its table into the page its -doc flag names, at the end
// of a 20-minute run: that page must exist and hold the markers, or the run's
// table is lost.
func TestMakeBenchWritesTheTableIntoAPageWithMarkers(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join("..", "Makefile"))
	require.NoError(t, err)
	m := regexp.MustCompile(`\$\(GO\) run \./bench [^\n]*-doc (\S+)`).FindSubmatch(mk)
	require.NotNil(t, m, "the Makefile's bench target passes -doc PAGE")
	page := string(m[1])
	assert.Equal(t, "docs/performance.md", page, "the bench table lives in docs/performance.md (the README links there)")

	raw, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(page)))
	require.NoError(t, err)
	copyPath := filepath.Join(t.TempDir(), "page.md")
	require.NoError(t, os.WriteFile(copyPath, raw, 0o644))
	require.NoError(t, updateDoc(copyPath, "new table"), "%s keeps the bench markers", page)
	b, err := os.ReadFile(copyPath)
	require.NoError(t, err)
	assert.Contains(t, string(b), beginMarker+"\nnew table\n"+endMarker)
}
