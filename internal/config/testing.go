package config

import (
	"os"
	"testing"
)

// IsolateEnv unsets every variable spec reads for the rest of the test (and
// restores them after), so a test of configuration sees only what it sets.
func IsolateEnv(t testing.TB, spec any) {
	t.Helper()
	keys, err := Keys(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		t.Setenv(k, "") // registers the restore
		os.Unsetenv(k)
	}
}
