package workflows

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// continuedAsNew requires that the workflow in env continued as new, as
// workflowType, and returns the next run's input.
func continuedAsNew[T any](t *testing.T, env *testsuite.TestWorkflowEnvironment, workflowType string) T {
	t.Helper()
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "%v", err)
	assert.Equal(t, workflowType, can.WorkflowType.Name)
	var next T
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	return next
}
