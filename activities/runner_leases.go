package activities

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// LeaseHolder is a job attempt holding a pool's queue place or machine.
type LeaseHolder struct {
	JobID   int64
	Attempt int
	// RunnerName is the runner on the leased machine (the lease's JIT
	// runner, or the machine's persistent runner); "" for a queue place.
	// Attempt 0: not a lease but the job a machine's persistent runner
	// runs (RunnerName), which stops counting once gone.
	RunnerName string `json:",omitempty"`
	// Repo is the repository of the leased job (owner/name), which decides
	// where a JIT runner registered (pools.Pool.RunnerScope).
	Repo string `json:",omitempty"`
}

// LeaseCheckInput lists what a pool holds for others: job attempts with a
// queue place or a lease, and provisioning children it carried over
// continue-as-new (workflow IDs).
type LeaseCheckInput struct {
	Pool       string
	Holders    []LeaseHolder
	Provisions []string `json:",omitempty"`
}

// LeaseCheckResult lists the holders that are gone and the provisioning
// children that are no longer running.
type LeaseCheckResult struct {
	Gone             []LeaseHolder `json:",omitempty"`
	ProvisionsClosed []string      `json:",omitempty"`
}

// CheckLeaseHolders tells a pool which of its queue places and leases
// nobody holds any more: the job's RunnerJob workflow (runnerapi.
// JobWorkflowID, latest run) is closed or unknown (terminated, timed out,
// failed), and for a lease, the machine's runner is not running a job
// (with GitHub access; a runner GitHub reports busy keeps its machine
// leased, and so does any doubt: a GitHub error). It also reports which
// provisioning children have closed.
func (a *Runners) CheckLeaseHolders(ctx context.Context, in LeaseCheckInput) (LeaseCheckResult, error) {
	p, err := a.pool(in.Pool)
	if err != nil {
		return LeaseCheckResult{}, err
	}
	if a.Temporal == nil {
		return LeaseCheckResult{}, invalid("CheckLeaseHolders needs Runners.Temporal")
	}
	workflows := closedWorkflows{c: a.Temporal, seen: map[string]bool{}}
	var out LeaseCheckResult
	for _, h := range in.Holders {
		c, err := workflows.closed(ctx, runnerapi.JobWorkflowID(h.JobID))
		if err != nil {
			return LeaseCheckResult{}, err
		}
		if !c || (h.RunnerName != "" && a.runnerBusy(ctx, p.RunnerScope(h.Repo), h.RunnerName)) {
			continue
		}
		out.Gone = append(out.Gone, h)
	}
	for _, id := range in.Provisions {
		c, err := workflows.closed(ctx, id)
		if err != nil {
			return LeaseCheckResult{}, err
		}
		if c {
			out.ProvisionsClosed = append(out.ProvisionsClosed, id)
		}
	}
	if len(out.Gone)+len(out.ProvisionsClosed) > 0 {
		a.logger().InfoContext(ctx, "runner pool holders gone", "pool", p.Name, "gone", len(out.Gone), "provisions_closed", len(out.ProvisionsClosed))
	}
	return out, nil
}

// closedWorkflows tells whether workflows are closed, describing each one
// once.
type closedWorkflows struct {
	c    client.Client
	seen map[string]bool // workflow ID: closed
}

// closed reports whether workflow id's latest run is closed or unknown.
func (w closedWorkflows) closed(ctx context.Context, id string) (bool, error) {
	if c, ok := w.seen[id]; ok {
		return c, nil
	}
	desc, err := w.c.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		w.seen[id] = true
	case err != nil:
		return false, fmt.Errorf("describe %s: %w", id, err)
	default:
		w.seen[id] = desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}
	return w.seen[id], nil
}

// runnerBusy reports whether GitHub says the runner is running a job; any
// doubt (no GitHub, an error) counts as busy when GitHub is configured,
// as idle in local mode (no runner can run anything there).
func (a *Runners) runnerBusy(ctx context.Context, scope pools.Scope, name string) bool {
	if a.GitHub == nil {
		return false
	}
	api, err := a.GitHub.API(0)
	if err != nil {
		return true
	}
	r, found, err := api.RunnerByName(ctx, scope, name)
	if err != nil {
		return true
	}
	return found && r.Busy
}
