package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Prometheus returns the Prometheus server and promtool binaries: $PROMETHEUS
// and $PROMTOOL (set by `make test`), else whatever scripts/prometheus.sh
// finds or installs (Debian's prometheus package).
func Prometheus() (server, promtool string, err error) {
	server, promtool = os.Getenv("PROMETHEUS"), os.Getenv("PROMTOOL")
	if server != "" && promtool != "" {
		return server, promtool, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", "", err
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "prometheus.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("scripts/prometheus.sh: %w", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != 2 {
		return "", "", fmt.Errorf("scripts/prometheus.sh printed %q, want the server's and promtool's paths", out)
	}
	return lines[0], lines[1], nil
}
