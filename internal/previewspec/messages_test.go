package previewspec

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every message Validate can give, in full and in the order given (sorted,
// so that the order does not depend on map iteration). start's timeout is
// not checked: the app is a daemon.
func TestValidateMessagesInFullAndInOrder(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"every field", `
machine: {vcpu: 65, memory_mib: 10, storage_gib: 5000, autosleep: soon}
app: {port: 70000, health_path: healthz, health_timeout: 2h}
env: {DRYDOCK_SHA: x, "bad name": y, GOOD: z, "1X": w}
setup:
  - {command: [""], timeout: 7h}
build:
  - {run: make, command: [make]}
  - {}
seed:
  - {run: x, timeout: 0.5s}
start: {command: [""], timeout: 7h}
visibility: everyone
`, []string{
			`app.health_path must start with / (got "healthz")`,
			`app.health_timeout must be between 1s and 1h (got 2h0m0s)`,
			`app.port must be between 1 and 65535 (got 70000)`,
			`build[0]: give run or command, not both`,
			`build[1]: needs run (a shell script) or command (an argv list)`,
			`env: "1X" is not a valid variable name`,
			`env: "DRYDOCK_SHA": the DRYDOCK_ prefix is reserved for the variables Drydock sets`,
			`env: "bad name" is not a valid variable name`,
			`machine.autosleep: autosleep "soon": want parts like 30s, 5m, 2h, 7d, 1w, raw seconds or "never"`,
			`machine.memory_mib must be between 256 and 262144 (got 10)`,
			`machine.storage_gib must be between 1 and 4096 (got 5000)`,
			`machine.vcpu must be between 0 and 64 (got 65)`,
			`seed[0]: timeout must be between 1s and 6h (got 500ms)`,
			`setup[0]: command[0] is empty`,
			`setup[0]: timeout must be between 1s and 6h (got 7h0m0s)`,
			`start: command[0] is empty`,
			`visibility must be public, org or private (got "everyone")`,
		}},
		{"lower bounds and start", `{"machine": {"vcpu": -1}, "app": {"port": -1}, "start": {"run": "x", "command": ["y"]}}`, []string{
			`app.port must be between 1 and 65535 (got -1)`,
			`machine.vcpu must be between 0 and 64 (got -1)`,
			`start: give run or command, not both`,
		}},
		{"no start", `{}`, []string{
			`start: needs run (a shell script) or command (an argv list)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			require.Error(t, err)
			assert.Equal(t, "invalid preview spec:\n- "+strings.Join(tc.want, "\n- "), err.Error())
		})
	}
}
