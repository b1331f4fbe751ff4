// Package workflows holds Drydock's Temporal workflows and the names shared by
// everything that talks to them (the webhook server, the starter, the worker):
// the task queue, workflow ID helpers and search attributes, so that nobody
// types one of these strings twice.
//
// Workflows decide; they do no I/O, read no clock and draw no random numbers
// except through Temporal's deterministic APIs. Activities (package
// activities) act.
package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// TaskQueue is the task queue Drydock's workers poll.
const TaskQueue = "drydock"

// Workflow IDs are business keys: two webhooks for one pull request reach one
// workflow, and the ID serializes everything done to its machine.

// PreviewWorkflowID is the ID of the PreviewLifecycle workflow of one pull request.
func PreviewWorkflowID(owner, repo string, number int) string {
	return fmt.Sprintf("preview:%s/%s:%d", strings.ToLower(owner), strings.ToLower(repo), number)
}

// RunnerJobWorkflowID is the ID of the RunnerJob workflow of one GitHub Actions job.
func RunnerJobWorkflowID(jobID int64) string { return runnerapi.JobWorkflowID(jobID) }

// RunnerPoolWorkflowID is the ID of the RunnerPool workflow of one pool.
func RunnerPoolWorkflowID(pool string) string { return runnerapi.PoolWorkflowID(pool) }

// RepoKey is how a repository appears in DrydockRepo: "owner/repo" in lower
// case (GitHub names are case-insensitive), so queries match however a
// webhook spelled it.
func RepoKey(owner, repo string) string { return strings.ToLower(owner + "/" + repo) }

// Search attributes that make Drydock's runs findable in the Temporal UI and
// with `temporal workflow list --query`. They are registered by `make dev`,
// by the end-to-end tests and by docker-compose.temporal.yml.
var (
	SearchAttrRepo      = temporal.NewSearchAttributeKeyKeyword("DrydockRepo")
	SearchAttrPRNumber  = temporal.NewSearchAttributeKeyInt64("DrydockPRNumber")
	SearchAttrMachineID = temporal.NewSearchAttributeKeyKeyword("DrydockMachineID")
	SearchAttrPhase     = temporal.NewSearchAttributeKeyKeyword("DrydockPhase")
	SearchAttrPool      = temporal.NewSearchAttributeKeyKeyword("DrydockPool")
	SearchAttrJobID     = temporal.NewSearchAttributeKeyInt64("DrydockJobID")
)

// SearchAttributes lists the custom search attributes with their types, for
// registration (`temporal operator search-attribute create --name N --type T`).
func SearchAttributes() temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		SearchAttrRepo.ValueSet(""),
		SearchAttrPRNumber.ValueSet(0),
		SearchAttrMachineID.ValueSet(""),
		SearchAttrPhase.ValueSet(""),
		SearchAttrPool.ValueSet(""),
		SearchAttrJobID.ValueSet(0),
	)
}

// SearchAttributeFlags renders the attributes as `temporal server start-dev`
// flags (`--search-attribute Name=Type`).
func SearchAttributeFlags() []string {
	var out []string
	for k := range SearchAttributes().GetUntypedValues() {
		out = append(out, "--search-attribute", k.GetName()+"="+k.GetValueType().String())
	}
	sortPairs(out)
	return out
}

// sortPairs sorts flag pairs by value so the output is stable (map order is not).
func sortPairs(flags []string) {
	for i := 1; i < len(flags); i += 2 {
		for j := i + 2; j < len(flags); j += 2 {
			if flags[j] < flags[i] {
				flags[i], flags[j] = flags[j], flags[i]
			}
		}
	}
}

// DevServerFlags are the `temporal server start-dev` settings Drydock needs
// beyond its search attributes:
//   - Every job waiting for a runner pool's machine is an in-flight acquire
//     Update on the pool's workflow, and the server admits 10 per workflow by
//     default (history.maxInFlightUpdates); more waiters are retried by their
//     callers and lose their FIFO place.
//   - A history shard reads its transfer queue (new workflow tasks, activity
//     tasks, signals' workflow tasks) at most history.transferProcessorMaxPollRPS
//     times a second, 20 by default: a task made within 50 ms of the shard's
//     last read waits for the next one. The dev server has one shard, so on it
//     any other workflow's task holds up a job's first workflow task by up to
//     50 ms (25 on average), which is most of a queued job's dispatch.
func DevServerFlags() []string {
	var flags []string
	for _, s := range DynamicConfig {
		flags = append(flags, "--dynamic-config-value", s.Key+"="+s.Value)
	}
	return flags
}

// DynamicSetting is one key of the server's dynamic config and its value.
type DynamicSetting struct{ Key, Value string }

// DynamicConfig is the server's dynamic config Drydock's own Temporal setups
// set: DevServerFlags for the dev server, deploy/temporal/dynamicconfig.yaml
// (a test keeps it the same) for docker-compose.temporal.yml and make cluster.
var DynamicConfig = []DynamicSetting{
	{"history.maxInFlightUpdates", MaxInFlightUpdates},
	{"history.transferProcessorMaxPollRPS", TransferPollRPS},
}

// MaxInFlightUpdates is the history.maxInFlightUpdates Drydock's own Temporal
// setups use (make dev, tests, docker-compose.temporal.yml).
const MaxInFlightUpdates = "500"

// TransferPollRPS is the history.transferProcessorMaxPollRPS Drydock's own
// Temporal setups use: a task waits at most 5 ms for its shard's next read,
// for up to ten times the reads on a shard that is busy all the time (each
// a range read of the tasks made since the last).
const TransferPollRPS = "200"
