package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine describes where the numbers were measured.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	MemGiB int    `json:"mem_gib"`
	OS     string `json:"os"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemGiB = int(math.Round(float64(kb) / (1 << 20)))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func commit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "+dirty"
	}
	return c
}

// Render is the Markdown table of a report, with its machine.
func Render(r Report) string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Measured %s on %s (%d cores, %d GiB, %s, %s), commit %s", r.Date.Format("2006-01-02 15:04 MST"), m.CPU, m.Cores, m.MemGiB, m.Kernel, m.Go, r.Commit)
	if r.Scale != 1 {
		fmt.Fprintf(&b, ", workloads scaled ×%g", r.Scale)
	}
	b.WriteString(".\n\n| Scenario | Metric | Value | Baseline (same run) | Ratio | Goal |\n|---|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		if s.Error != "" {
			fmt.Fprintf(&b, "| %s | **failed** | %s | | | |\n", s.Title, strings.ReplaceAll(s.Error, "|", "/"))
			continue
		}
		for i, row := range s.Rows {
			title := ""
			if i == 0 {
				title = s.Title
			}
			metric := row.Metric
			if row.Note != "" {
				metric += " (" + row.Note + ")"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", title, metric, format(row.Value, row.Unit), optional(row.Baseline, row.Unit), ratio(row.Ratio), goal(row))
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func renderResult(s Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "== %s (%.1fs)\n", s.Title, s.Seconds)
	if s.Error != "" {
		fmt.Fprintf(&b, "   FAILED: %s\n", s.Error)
	}
	for _, row := range s.Rows {
		fmt.Fprintf(&b, "   %-58s %14s", row.Metric, format(row.Value, row.Unit))
		if row.Baseline != nil {
			fmt.Fprintf(&b, "  baseline %s", optional(row.Baseline, row.Unit))
		}
		if row.Ratio != nil {
			fmt.Fprintf(&b, "  ratio %s", ratio(row.Ratio))
		}
		if row.Goal != "" {
			fmt.Fprintf(&b, "  goal %s", goal(row))
		}
		if row.Note != "" {
			fmt.Fprintf(&b, "  (%s)", row.Note)
		}
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}

func format(v float64, unit string) string {
	switch unit {
	case "ms":
		if v < 10 {
			return fmt.Sprintf("%.2f ms", v)
		}
		return fmt.Sprintf("%.0f ms", v)
	case "µs":
		return fmt.Sprintf("%.1f µs", v)
	case "":
		return trim(v)
	default:
		return trim(v) + " " + unit
	}
}

func trim(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	if math.Abs(v) >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func optional(v *float64, unit string) string {
	if v == nil {
		return ""
	}
	return format(*v, unit)
}

func ratio(v *float64) string {
	if v == nil {
		return ""
	}
	return fmt.Sprintf("%.2f", *v)
}

func goal(r Row) string {
	if r.Goal == "" {
		return ""
	}
	switch {
	case r.Met == nil:
		return r.Goal
	case *r.Met:
		return r.Goal + " ✓"
	default:
		return r.Goal + " ✗"
	}
}

// Helpers for scenarios.

// F returns a pointer to v (for Row.Baseline and Row.Ratio).
func F(v float64) *float64 { return &v }

// B returns a pointer to v (for Row.Met).
func B(v bool) *bool { return &v }

// MS is d in milliseconds.
func MS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// US is d in microseconds.
func US(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
