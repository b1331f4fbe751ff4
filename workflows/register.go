package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/workflows/runnerapi"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// Registry is where workflows are registered: a worker.Worker, or a
// worker.WorkflowReplayer replaying recorded histories.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

// Register registers every Drydock workflow under the name it runs with, so
// the worker and the replay tests cannot disagree.
func Register(r Registry) {
	r.RegisterWorkflowWithOptions(PreviewLifecycle, workflow.RegisterOptions{Name: PreviewLifecycleName})
	r.RegisterWorkflowWithOptions(RunnerPool, workflow.RegisterOptions{Name: runnerapi.RunnerPoolName})
	r.RegisterWorkflowWithOptions(RunnerProvision, workflow.RegisterOptions{Name: runnerapi.RunnerProvisionName})
	r.RegisterWorkflowWithOptions(RunnerJob, workflow.RegisterOptions{Name: runnerapi.RunnerJobName})
	r.RegisterWorkflowWithOptions(RunnerPrewarm, workflow.RegisterOptions{Name: RunnerPrewarmName})
	r.RegisterWorkflowWithOptions(Reconcile, workflow.RegisterOptions{Name: ReconcileName})
	r.RegisterWorkflowWithOptions(PreviewSlots, workflow.RegisterOptions{Name: slotsapi.WorkflowName})
}
