package workflows

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWorkflowIDsAreBusinessKeys(t *testing.T) {
	assert.Equal(t, "preview:octo/hello-world:42", PreviewWorkflowID("Octo", "Hello-World", 42))
	assert.Equal(t, "runner-job:123456789", RunnerJobWorkflowID(123456789))
	assert.Equal(t, "runner-pool:linux-x64", RunnerPoolWorkflowID("linux-x64"))
}

// The registration docker-compose.temporal.yml and make cluster run
// (deploy/temporal/namespace.sh) creates the same search attributes as make
// dev and the tests.
func TestComposeRegistersTheSearchAttributes(t *testing.T) {
	b, err := os.ReadFile("../deploy/temporal/namespace.sh")
	require.NoError(t, err)
	got := regexp.MustCompile(`Drydock\w+=\w+`).FindAllString(string(b), -1)
	var want []string
	flags := SearchAttributeFlags()
	for i := 1; i < len(flags); i += 2 {
		want = append(want, flags[i])
	}
	slices.Sort(got)
	assert.Equal(t, want, got)
	for _, f := range want {
		assert.True(t, strings.HasPrefix(f, "Drydock"))
	}
}

// The dynamic config of docker-compose.temporal.yml and make cluster allows
// as many in-flight Updates, and reads its transfer queues as often, as make
// dev and the tests, and both load it.
func TestComposeSetsTheDevServersDynamicConfig(t *testing.T) {
	b, err := os.ReadFile("../deploy/temporal/dynamicconfig.yaml")
	require.NoError(t, err)
	assert.Equal(t, []DynamicSetting{
		{"history.maxInFlightUpdates", MaxInFlightUpdates},
		{"history.transferProcessorMaxPollRPS", TransferPollRPS},
	}, DynamicConfig)
	flags := DevServerFlags()
	for _, s := range DynamicConfig {
		assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(s.Key)+`:\s+- value: `+s.Value+`$`, string(b))
		i := slices.Index(flags, s.Key+"="+s.Value)
		if assert.Positive(t, i, "dev server flags %v: %s", flags, s.Key) {
			assert.Equal(t, "--dynamic-config-value", flags[i-1])
		}
	}
	for file, ref := range map[string]string{
		"../docker-compose.temporal.yml": "file: ./deploy/temporal/dynamicconfig.yaml",
		"../scripts/cluster.sh":          "/deploy/temporal/dynamicconfig.yaml",
	} {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		assert.Contains(t, string(b), ref, file)
	}
}
