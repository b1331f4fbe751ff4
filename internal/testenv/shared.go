// Package testenv gives tests what they share: the project's ../shared
// material (API spec, webhook fixtures) and a real Temporal dev server.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// SharedDir finds the shared/ directory that sits beside the repository
// (present on every development machine and in CI). It walks up from the
// working directory, so it works from any package's tests.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		cand := filepath.Join(dir, "..", "shared")
		if fi, err := os.Stat(filepath.Join(cand, "dedalus", "machines-openapi.json")); err == nil && !fi.IsDir() {
			abs, _ := filepath.Abs(cand)
			return abs
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("../shared (with dedalus/machines-openapi.json) not found beside the repository: tests read the API spec and webhook fixtures from it")
		}
		dir = parent
	}
}

// Fixture reads a GitHub webhook payload from shared/fixtures/github-webhooks.
func Fixture(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(SharedDir(t), "fixtures", "github-webhooks", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
