package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// ErrTypeMachineTooLarge: a preview spec asks for a bigger machine than
// PREVIEW_MAX_VCPU, PREVIEW_MAX_MEMORY_MIB or PREVIEW_MAX_STORAGE_GIB allow.
const ErrTypeMachineTooLarge = "PreviewMachineTooLarge"

// PreviewCaps are the worker's limits on previews: count caps (decided by
// the PreviewSlots coordinator) and the largest machine a spec may ask for
// (0: unlimited).
type PreviewCaps struct {
	Slots         slotsapi.Caps
	MaxVCPU       float64 `json:",omitempty"`
	MaxMemoryMiB  int64   `json:",omitempty"`
	MaxStorageGiB int64   `json:",omitempty"`
}

// CheckMachine returns why a machine of this size is refused, or "".
func (c PreviewCaps) CheckMachine(vcpu float64, memoryMiB, storageGiB int64) string {
	var over []string
	if c.MaxVCPU > 0 && vcpu > c.MaxVCPU {
		over = append(over, fmt.Sprintf("%g vCPU (PREVIEW_MAX_VCPU=%g)", vcpu, c.MaxVCPU))
	}
	if c.MaxMemoryMiB > 0 && memoryMiB > c.MaxMemoryMiB {
		over = append(over, fmt.Sprintf("%d MiB of memory (PREVIEW_MAX_MEMORY_MIB=%d)", memoryMiB, c.MaxMemoryMiB))
	}
	if c.MaxStorageGiB > 0 && storageGiB > c.MaxStorageGiB {
		over = append(over, fmt.Sprintf("%d GiB of storage (PREVIEW_MAX_STORAGE_GIB=%d)", storageGiB, c.MaxStorageGiB))
	}
	if len(over) == 0 {
		return ""
	}
	msg := "the preview spec asks for a machine larger than this server allows: "
	for i, o := range over {
		if i > 0 {
			msg += ", "
		}
		msg += o
	}
	return msg + "; no machine was created"
}

// PreviewCaps returns the caps as this worker has them now. Workflows read
// them (a local activity, recorded in history) before every decision, so a
// worker restarted with other settings applies them at once.
func (p *Previews) PreviewCaps(context.Context) (PreviewCaps, error) {
	return p.Caps, nil
}

// PreviewSlots are the activities that talk to the PreviewSlots coordinator.
type PreviewSlots struct {
	Temporal  client.Client
	TaskQueue string
	Logger    *slog.Logger
}

func (a *PreviewSlots) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.Default()
	}
	return a.Logger
}

// RequestSlot asks the coordinator for a slot, starting it if it does not
// run (Update-with-start); the answer comes at once: granted or queued. A
// coordinator that completed or continued as new under the request makes
// it fail retryably: the activity's retry reaches the next run, and the
// request is idempotent (keyed by the preview's workflow ID).
func (a *PreviewSlots) RequestSlot(ctx context.Context, req slotsapi.Request) (slotsapi.Answer, error) {
	if a.Temporal == nil || a.TaskQueue == "" {
		return slotsapi.Answer{}, invalid("RequestSlot needs PreviewSlots.Temporal and PreviewSlots.TaskQueue")
	}
	start := a.Temporal.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       slotsapi.WorkflowID,
		TaskQueue:                a.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, slotsapi.WorkflowName, slotsapi.Input{})
	h, err := a.Temporal.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName:   slotsapi.UpdateAcquire,
			Args:         []any{req},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return slotsapi.Answer{}, fmt.Errorf("ask for a preview slot: %w", err)
	}
	var ans slotsapi.Answer
	if err := h.Get(ctx, &ans); err != nil {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) && ae.Type() == slotsapi.ErrTypeInvalidRequest {
			return slotsapi.Answer{}, temporal.NewNonRetryableApplicationError(ae.Error(), ErrTypeInvalidArgument, nil)
		}
		return slotsapi.Answer{}, fmt.Errorf("ask for a preview slot: %w", err)
	}
	return ans, nil
}

// CheckSlotHolders tells the coordinator which of the previews it counts
// are gone: their workflow is closed or unknown, or, for a seeded holder,
// it no longer has a machine (DrydockMachineID is empty).
func (a *PreviewSlots) CheckSlotHolders(ctx context.Context, in slotsapi.CheckInput) (slotsapi.CheckResult, error) {
	if a.Temporal == nil {
		return slotsapi.CheckResult{}, invalid("CheckSlotHolders needs PreviewSlots.Temporal")
	}
	var out slotsapi.CheckResult
	check := func(id string, needMachine bool) error {
		heartbeat(ctx, "describe "+id)
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		d, err := a.Temporal.DescribeWorkflowExecution(qctx, id, "")
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			out.Gone = append(out.Gone, id)
		case err != nil:
			return fmt.Errorf("describe %s: %w", id, err)
		case d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
			out.Gone = append(out.Gone, id)
		case needMachine && keywordAttr(d.GetWorkflowExecutionInfo().GetSearchAttributes(), machineAttr) == "":
			out.Gone = append(out.Gone, id)
		}
		return nil
	}
	for _, h := range in.Holders {
		if err := check(h.WorkflowID, h.Seeded); err != nil {
			return slotsapi.CheckResult{}, err
		}
	}
	for _, id := range in.Waiters {
		if err := check(id, false); err != nil {
			return slotsapi.CheckResult{}, err
		}
	}
	if len(out.Gone) > 0 {
		a.logger().InfoContext(ctx, "preview slot holders gone", "gone", out.Gone)
	}
	return out, nil
}

// Search attributes of previews (workflows.SearchAttrRepo, SearchAttrPRNumber).
const (
	repoAttr     = "DrydockRepo"
	prNumberAttr = "DrydockPRNumber"
)

// ListPreviewsWithMachines lists the running previews that have a machine,
// from visibility: what a fresh coordinator counts before it decides.
func (a *PreviewSlots) ListPreviewsWithMachines(ctx context.Context) ([]slotsapi.Holder, error) {
	if a.Temporal == nil {
		return nil, invalid("ListPreviewsWithMachines needs PreviewSlots.Temporal")
	}
	// Every running preview, filtered here: whether a keyword may be
	// compared with '' differs between visibility stores.
	q := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", previewWorkflowType)
	var out []slotsapi.Holder
	var token []byte
	for {
		resp, err := a.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list previews with machines: %w", err)
		}
		heartbeat(ctx, "listing previews")
		for _, e := range resp.GetExecutions() {
			sa := e.GetSearchAttributes()
			if keywordAttr(sa, machineAttr) == "" {
				continue
			}
			out = append(out, slotsapi.Holder{
				WorkflowID: e.GetExecution().GetWorkflowId(), Repo: keywordAttr(sa, repoAttr),
				Number: int(intAttr(sa, prNumberAttr)), Since: e.GetStartTime().AsTime(),
			})
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return out, nil
		}
	}
}
