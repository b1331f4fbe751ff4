// Package testenv gives tests what they share: a real Temporal dev server
// (the CLI that `make test` installs), started once per test binary.
package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/workflows"
)

// TemporalCLI returns the Temporal CLI binary: $TEMPORAL_CLI (set by
// `make test`), or whatever scripts/temporal-cli.sh finds or builds.
func TemporalCLI() (string, error) {
	if p := os.Getenv("TEMPORAL_CLI"); p != "" {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "temporal-cli.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/temporal-cli.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// StartTemporal starts a real `temporal server start-dev` on free loopback
// ports with Drydock's search attributes registered, plus extraArgs
// (e.g. more --dynamic-config-value settings). Stop it when done. Call it
// from TestMain: one server per test binary keeps tests fast.
func StartTemporal(ctx context.Context, extraArgs ...string) (*testsuite.DevServer, error) {
	cli, err := TemporalCLI()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:     cli,
		ClientOptions:    &client.Options{HostPort: "", Namespace: "default", Logger: quiet{}},
		LogLevel:         "error",
		SearchAttributes: workflows.SearchAttributes(),
		ExtraArgs:        append(workflows.DevServerFlags(), extraArgs...),
		Stdout:           io.Discard,
		Stderr:           os.Stderr,
	})
	if err != nil {
		return nil, fmt.Errorf("start Temporal dev server (%s): %w", cli, err)
	}
	return srv, nil
}

// quiet drops the SDK's logging in tests; failures surface as test errors.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}

// MainWithTemporal is a TestMain body: it starts a dev server, stores it in
// *srv for the package's tests, runs them, stops the server and exits.
func MainWithTemporal(m interface{ Run() int }, srv **testsuite.DevServer) {
	s, err := StartTemporal(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*srv = s
	code := m.Run()
	_ = s.Stop()
	os.Exit(code)
}
