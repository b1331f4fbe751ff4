// Package configtest helps the binaries' tests check their configuration:
// an isolated environment, and --help as the real binary prints it.
package configtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/drydock-dev/drydock/internal/config"
)

// mainEnv, set in a child process, makes RunMain run the binary's main.
const mainEnv = "DRYDOCK_CONFIGTEST_MAIN"

// RunMain is for a binary package's TestMain: in the child processes Help
// starts, it runs the binary's main instead of the tests.
func RunMain(m *testing.M, main func()) {
	if os.Getenv(mainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// IsolateEnv unsets every variable spec reads for the rest of the test (and
// restores them after), so a test of configuration sees only what it sets.
func IsolateEnv(t testing.TB, spec any) {
	t.Helper()
	keys, err := config.Keys(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		t.Setenv(k, "") // registers the restore
		os.Unsetenv(k)
	}
}

// Help runs the binary (the test binary re-executing its main, see RunMain)
// with --help and returns what it printed. It fails the test unless the
// binary exits 0.
func Help(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--help")
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	return string(out)
}

// HelpMissing lists the variables of spec (with their defaults, read from
// the struct tags) that help does not show on one line.
func HelpMissing(t testing.TB, help string, spec any) []string {
	t.Helper()
	pairs, err := config.Defaults(spec)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, p := range pairs {
		found := false
		for _, l := range strings.Split(help, "\n") {
			f := strings.Fields(l)
			if len(f) > 0 && f[0] == p[0] && (p[1] == "" || strings.Contains(l, " "+p[1]+" ")) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, p[0]+" (default "+p[1]+")")
		}
	}
	return missing
}

// Documented checks, for a binary whose TestMain calls RunMain, that
// config.ConfigurationDoc documents every variable spec reads and that --help
// lists each with its default.
func Documented(t *testing.T, spec any) {
	t.Run("docs", func(t *testing.T) {
		missing, err := config.MissingFromDocs(spec)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Errorf("document these in %s: %v", config.ConfigurationDoc, missing)
		}
	})
	t.Run("help", func(t *testing.T) {
		help := Help(t)
		if missing := HelpMissing(t, help, spec); len(missing) > 0 {
			t.Errorf("--help must list these with their defaults: %v\n%s", missing, help)
		}
	})
}

// Rejection is a setting a binary must refuse at start: its error names Want.
type Rejection struct {
	Env  map[string]string
	Want string
}

// Rejects runs run once per case, in an environment holding only base and
// the case's settings (spec's variables are unset first), and checks that
// it fails at once with an error naming the case's variable and never
// containing secret (when set). run must not block on a valid setting:
// a run still going after 20 s fails the case.
func Rejects(t *testing.T, spec any, base map[string]string, secret string, run func() error, cases []Rejection) {
	for _, tc := range cases {
		t.Run(tc.Want, func(t *testing.T) {
			IsolateEnv(t, spec)
			for _, env := range []map[string]string{base, tc.Env} {
				for k, v := range env {
					t.Setenv(k, v)
				}
			}
			errc := make(chan error, 1)
			go func() { errc <- run() }()
			var err error
			select {
			case err = <-errc:
			case <-time.After(20 * time.Second):
				t.Fatalf("accepted %v and started", tc.Env)
			}
			if err == nil {
				t.Fatalf("accepted %v", tc.Env)
			}
			if !strings.Contains(err.Error(), tc.Want) {
				t.Errorf("error does not name %s: %v", tc.Want, err)
			}
			if secret != "" && strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}
