package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// executions lists every workflow execution of the namespace matching query.
func (c *chaos) executions(ctx context.Context, query string) ([]execution, error) {
	var out []execution
	var token []byte
	for {
		resp, err := c.h.TC.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: c.h.Temporal.Namespace(), Query: query, PageSize: 1000, NextPageToken: token,
		})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetExecutions() {
			out = append(out, execution{id: e.GetExecution().GetWorkflowId(), runID: e.GetExecution().GetRunId(),
				typ: e.GetType().GetName(), status: e.GetStatus()})
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

type execution struct {
	id, runID, typ string
	status         enumspb.WorkflowExecutionStatus
}

// createdMachines reads a run's history: the machines its CreateMachine
// activities returned.
func (c *chaos) createdMachines(ctx context.Context, e execution) ([]string, error) {
	it := c.h.TC.GetWorkflowHistory(ctx, e.id, e.runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]string{}
	var ids []string
	dc := converter.GetDefaultDataConverter()
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, err
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == "CreateMachine" {
			var ref activities.MachineRef
			if err := dc.FromPayloads(a.GetResult(), &ref); err != nil {
				return nil, fmt.Errorf("%s: CreateMachine result: %w", e.id, err)
			}
			ids = append(ids, ref.MachineID)
		}
	}
	return ids, nil
}

// checkMachines: exactly one machine per pull request, and every machine
// the emulator ever created is one a workflow history knows (no duplicate
// created by a retried or replayed call).
func (c *chaos) checkMachines(ctx context.Context) {
	all, err := c.executions(ctx, "")
	if err != nil {
		c.fail("list workflows: %v", err)
		return
	}
	known := map[string]string{} // machine → owning workflow
	perPR := map[string]map[string]bool{}
	poolMachines := 0
	for _, e := range all {
		ids, err := c.createdMachines(ctx, e)
		if err != nil {
			c.fail("history of %s: %v", e.id, err)
			continue
		}
		for _, m := range ids {
			if prev, dup := known[m]; dup && prev != e.id {
				c.fail("machine %s created by both %s and %s", m, prev, e.id)
			}
			known[m] = e.id
			if e.typ != workflows.PreviewLifecycleName {
				poolMachines++
				continue
			}
			if perPR[e.id] == nil {
				perPR[e.id] = map[string]bool{}
			}
			perPR[e.id][m] = true
		}
	}
	maxPerPR, withMachine := c.machinesPerPR(perPR)
	created := c.checkCreatedKnown(known)
	c.count("pull requests that got a machine / most machines for one PR", fmt.Sprintf("%d / %d", withMachine, maxPerPR))
	// Duplicates are caught above (every creation is in exactly one
	// history); replacements are not counted here: the pool was
	// terminated and reconfigured. Machines deleted as broken are checked
	// in checkRunnerInvariants.
	c.count("runner machines provisioned", poolMachines)
	c.count("machines created (emulator) = machines in workflow histories", fmt.Sprintf("%d = %d", created, len(known)))
}

// machinesPerPR fails every pull request that had more than one machine,
// and returns the most any had and how many had one.
func (c *chaos) machinesPerPR(perPR map[string]map[string]bool) (maxPerPR, withMachine int) {
	for id, ms := range perPR {
		maxPerPR = max(maxPerPR, len(ms))
		withMachine++
		if len(ms) > 1 {
			c.fail("%s had %d machines, want 1", id, len(ms))
		}
	}
	return maxPerPR, withMachine
}

// checkCreatedKnown fails unless every machine the emulator created is one
// a history knows (known), and returns how many it created.
func (c *chaos) checkCreatedKnown(known map[string]string) int64 {
	st := c.h.Emu.Stats()
	created := st.Creates
	if created != int64(len(known)) {
		var unknown []string
		for _, m := range st.Machines {
			if _, ok := known[m.MachineID]; !ok {
				unknown = append(unknown, fmt.Sprintf("%s (%s, %g vCPU)", m.MachineID, m.Phase, m.VCPU))
			}
		}
		c.fail("the emulator created %d machines but the workflow histories know %d: created that nothing owns: %s",
			created, len(known), strings.Join(unknown, ", "))
	}
	return created
}

// checkOpenWorkflows: nothing may be left running but the pool's entity
// workflow.
func (c *chaos) checkOpenWorkflows(ctx context.Context) {
	open, err := c.executions(ctx, "ExecutionStatus = 'Running'")
	if err != nil {
		c.fail("list open workflows: %v", err)
		return
	}
	byType := map[string]int{}
	var stuck []string
	for _, e := range open {
		byType[e.typ]++
		if e.typ == runnerapi.RunnerPoolName && (e.id == runnerapi.PoolWorkflowID(pool) || e.id == runnerapi.PoolWorkflowID(persistentPool)) {
			continue
		}
		stuck = append(stuck, e.typ+" "+e.id)
	}
	var parts []string
	for t, n := range byType {
		parts = append(parts, fmt.Sprintf("%s %d", t, n))
	}
	sort.Strings(parts)
	c.count("open workflows at the end", strings.Join(parts, ", "))
	if len(stuck) > 0 {
		sort.Strings(stuck)
		c.fail("workflows still open at the end: %s", strings.Join(stuck, ", "))
	}
}
