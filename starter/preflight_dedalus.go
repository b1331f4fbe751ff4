package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/drydock-dev/drydock/dedalus"
)

// checkDedalus: the API key is accepted (a list of one machine) and, with
// -create-machine, a small machine can be created and deleted.
func (p *preflight) checkDedalus(ctx context.Context) {
	c, err := dedalus.NewFromConfig(p.cfg.Dedalus)
	if err != nil {
		p.report("dedalus key", fail("set DEDALUS_API_KEY (and DEDALUS_ORG_ID if the key spans organizations) as the worker has them", "%v", err))
		return
	}
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, err := c.ListMachines(cctx, dedalus.ListOptions{Limit: 1}); err != nil {
		p.report("dedalus key", fail(dedalusFix(err), "%s: %v", c.BaseURL(), err))
		return
	}
	p.report("dedalus key", pass("%s accepts the key", c.BaseURL()))
	if !p.createMachine {
		p.report("dedalus machine", note("not created (-create-machine creates and deletes one; it costs a few seconds of a machine)"))
		return
	}
	p.report("dedalus machine", p.machineRoundTrip(ctx, c))
}

func dedalusFix(err error) string {
	if ae, ok := dedalus.AsAPIError(err); ok && (ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden) {
		return "DEDALUS_API_KEY is wrong, revoked or for another organization (DEDALUS_ORG_ID): issue a key for the organization Drydock bills"
	}
	return "check DEDALUS_BASE_URL and that Dedalus answers"
}

// machineRoundTrip creates a small machine, waits for it to run, deletes it
// and waits for it to be gone; a machine it created is deleted whatever
// happens after.
func (p *preflight) machineRoundTrip(ctx context.Context, c *dedalus.Client) outcome {
	cctx, cancel := context.WithTimeout(ctx, 4*p.timeout)
	defer cancel()
	m, err := c.CreateMachine(cctx, dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 512, StorageGiB: 1, Autosleep: "1m"}, manualKey("preflight-create", "machine"))
	if err != nil {
		fix := "check the key may create machines"
		if dedalus.IsQuotaExceeded(err) {
			fix = "the account is at a limit of its plan: delete machines or raise the plan"
		}
		return fail(fix, "create: %v", err)
	}
	id := m.MachineID
	_, runErr := c.WaitForPhase(cctx, id, dedalus.PhaseRunning)
	if _, err := c.DeleteMachine(cctx, id, dedalus.Mutation{IdempotencyKey: manualKey("preflight-delete", id)}); err != nil {
		return fail("delete it by hand: bin/starter machines delete "+id, "delete %s: %v", id, err)
	}
	if _, err := c.WaitForPhase(cctx, id, dedalus.PhaseDestroyed); err != nil {
		return fail("check it with bin/starter machines get "+id, "%s not destroyed: %v", id, err)
	}
	if runErr != nil {
		return fail("check Dedalus's status; the machine was deleted", "%s never ran: %v", id, runErr)
	}
	return pass("created, ran and deleted %s", fmt.Sprint(id))
}
