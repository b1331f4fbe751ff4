package previewspec

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExampleSpecIsValid(t *testing.T) {
	b, err := os.ReadFile("../../examples/previewapp/preview.yml")
	require.NoError(t, err)
	s, err := Parse(b)
	require.NoError(t, err)
	assert.EqualValues(t, 3000, s.App.Port)
	assert.Equal(t, "/healthz", s.App.HealthPath)
	assert.Equal(t, "10m", s.Machine.Autosleep)
	assert.Len(t, s.Build, 1)
	assert.Equal(t, []string{"python3", "examples/previewapp/app.py"}, s.Start.Argv())
	assert.Equal(t, []string{"sh", "-c", "python3 --version"}, s.Setup[0].Argv())
	assert.Equal(t, DefaultStepTimeout, s.Setup[0].Timeout.D())
}

func TestDefaultsAndJSON(t *testing.T) {
	s, err := Parse([]byte(`{"start": {"run": "npm start"}, "app": {"health_timeout": "30s"}}`))
	require.NoError(t, err)
	assert.EqualValues(t, DefaultVCPU, s.Machine.VCPU)
	assert.EqualValues(t, DefaultMemoryMiB, s.Machine.MemoryMiB)
	assert.EqualValues(t, DefaultPort, s.App.Port)
	assert.Equal(t, 30*time.Second, s.App.HealthTimeout.D())
}

func TestInvalidSpecsListEveryProblem(t *testing.T) {
	_, err := Parse([]byte(`
machine: {vcpu: -1, autosleep: soon}
app: {port: 70000, health_path: healthz}
env: {DRYDOCK_SHA: x, "bad name": y}
build:
  - {run: make, command: [make]}
  - {}
`))
	require.Error(t, err)
	var ie *InvalidError
	require.ErrorAs(t, err, &ie)
	msg := err.Error()
	for _, want := range []string{"machine.vcpu", "machine.autosleep", "app.port", "app.health_path",
		"DRYDOCK_ prefix is reserved", `"bad name" is not a valid`, "build[0]: give run or command, not both",
		"build[1]: needs run", "start: needs run"} {
		assert.Contains(t, msg, want)
	}
}

func TestRejectsUnknownFieldsAndJunk(t *testing.T) {
	_, err := Parse([]byte("start: {run: x}\nstrat: {run: y}\n"))
	assert.ErrorContains(t, err, "strat")
	_, err = Parse([]byte(""))
	assert.ErrorContains(t, err, "empty")
	_, err = Parse([]byte("start: {run: x}\napp: {health_timeout: forever}\n"))
	assert.ErrorContains(t, err, "duration")
	_, err = Parse(make([]byte, MaxSize+1))
	assert.ErrorContains(t, err, "limit")
}

func TestVisibility(t *testing.T) {
	s, err := Parse([]byte("visibility: org\nstart: {run: x}\n"))
	require.NoError(t, err)
	assert.Equal(t, VisibilityOrg, s.Visibility)

	s, err = Parse([]byte("start: {run: x}\n"))
	require.NoError(t, err)
	assert.Empty(t, s.Visibility, "no visibility in the spec: the worker's setting applies")

	_, err = Parse([]byte("visibility: everyone\nstart: {run: x}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `visibility must be public, org or private (got "everyone")`)

	assert.Equal(t, VisibilityOrg, CapVisibility(VisibilityPublic, VisibilityOrg), "the ceiling caps a more open visibility")
	assert.Equal(t, VisibilityPrivate, CapVisibility(VisibilityPrivate, VisibilityOrg), "a more closed one is kept")
	assert.Equal(t, VisibilityPublic, CapVisibility(VisibilityPublic, ""), "no ceiling")
	assert.Equal(t, VisibilityPrivate, CapVisibility("", VisibilityPublic), "unknown fails closed")
	assert.Equal(t, VisibilityPrivate, CapVisibility("PUBLIC", ""), "names are exact")
}
