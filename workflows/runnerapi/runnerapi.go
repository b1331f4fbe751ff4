// Package runnerapi is the contract of Drydock's runner-pool workflows: their
// names, IDs, handler names and the types that cross them. It is a leaf
// package so that workflows, activities (which call the pool's acquire
// Update), the webhook server and the starter can all import it.
//
// A RunnerPool entity workflow per pool (ID PoolWorkflowID) owns the pool's
// machines; a RunnerJob workflow per GitHub Actions job (ID JobWorkflowID)
// leases one, wakes it and starts a runner on it.
package runnerapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/pools"
)

// PoolWorkflowID is the ID of the RunnerPool workflow of one pool.
func PoolWorkflowID(pool string) string { return "runner-pool:" + pool }

// JobWorkflowID is the ID of the RunnerJob workflow of one GitHub Actions job.
func JobWorkflowID(jobID int64) string { return fmt.Sprintf("runner-job:%d", jobID) }

// ProvisionWorkflowID is the ID of the RunnerProvision child that makes the
// seq-th machine of a pool (seq is carried across continue-as-new, so IDs
// never repeat within a pool's life).
func ProvisionWorkflowID(pool string, seq int) string {
	return fmt.Sprintf("runner-provision:%s:%d", pool, seq)
}

// AcquireUpdateID is the stable update ID of one job attempt's acquire.
func AcquireUpdateID(jobID int64, attempt int) string {
	return fmt.Sprintf("acquire-%d-%d", jobID, attempt)
}

const (
	RunnerPoolName      = "RunnerPool"
	RunnerProvisionName = "RunnerProvision" // child of RunnerPool: one new machine
	RunnerJobName       = "RunnerJob"

	// UpdateAcquire (RunnerPool) leases a machine to a job: an idle one, else
	// a newly provisioned one below max_machines, else the request waits in a
	// FIFO queue. Argument AcquireRequest, result Lease. The update ID must be
	// stable per job attempt (AcquireUpdateID) so a retried caller
	// re-attaches to the same lease.
	UpdateAcquire = "acquire"
	// SignalRelease (RunnerPool) returns a machine (ReleaseRequest).
	SignalRelease = "release"
	// SignalResize (RunnerPool) changes min_idle/max_machines (ResizeRequest).
	SignalResize = "resize"
	// SignalDrain (RunnerPool) deletes machines once idle (DrainRequest).
	SignalDrain = "drain"
	// SignalPrewarm (RunnerPool) wakes up to N idle machines ahead of demand (PrewarmRequest).
	SignalPrewarm = "prewarm"
	// QueryInventory (RunnerPool) returns an Inventory.
	QueryInventory = "inventory"
	// SignalMachineCreated (RunnerPool, sent by its RunnerProvision
	// children): the machine a child created, so the pool's inventory owns
	// it (for the reconciler) while it is being set up (MachineCreated).
	SignalMachineCreated = "machine_created"
	// SignalMachineObserved (RunnerPool, sent by RunnerJob after it woke its
	// leased machine): what the wake saw, for the pool's awake accounting
	// (MachineObserved).
	SignalMachineObserved = "machine_observed"

	// SignalWithdraw (RunnerJob to RunnerPool) takes a job's request back:
	// its place in the queue is dropped (the waiting acquire fails with
	// ErrTypeAcquireWithdrawn) and a machine leased to it is returned, as
	// its own release would (WithdrawRequest). A job sends it when it is
	// completed or cancelled before it got its machine, and when its
	// workflow is cancelled.
	SignalWithdraw = "withdraw"
	// SignalReconfigure (RunnerPool) makes the pool read its configuration
	// (RUNNER_POOLS) from the worker again, as every run does at its start;
	// the payload is ignored. min_idle/max_machines edits in the
	// configuration win over earlier resizes.
	SignalReconfigure = "reconfigure"
	// SignalMachineProvisioned (RunnerPool, sent by its RunnerProvision
	// children to the pool's workflow ID, whichever run is current): the
	// child finished (MachineProvisioned). Children are abandoned on
	// continue-as-new, so the report reaches the next run.
	SignalMachineProvisioned = "machine_provisioned"
	// SignalRunnerStarted (RunnerJob to RunnerPool, persistent mode): GitHub
	// reports the job in progress on this machine's runner, which another
	// job leased or none (RunnerStarted). The machine is busy until the
	// job's completion (a release naming the runner), whatever its lease
	// does: a machine whose runner is busy is never freed or slept. (Pool
	// runs started before the persistent accounting swapped the two jobs'
	// leases instead.)
	SignalRunnerStarted = "runner_started"

	// SignalJobEvent (RunnerJob) carries a WorkflowJobEvent: in_progress or completed.
	SignalJobEvent = "workflow_job"
	// QueryJobStatus (RunnerJob) returns a RunnerJobStatus.
	QueryJobStatus = "status"
)

// Error types of acquire failures.
const (
	// ErrTypePoolContinuingAsNew: the pool is handing over to a new run. The
	// error is retryable: retry the same update (same update ID) and it
	// reaches the new run, where a request that was waiting keeps its place
	// in the queue.
	ErrTypePoolContinuingAsNew = "PoolContinuingAsNew"
	// ErrTypeInvalidAcquire: the AcquireRequest is malformed (JobID <= 0,
	// Attempt < 1). Not worth retrying.
	ErrTypeInvalidAcquire = "InvalidAcquireRequest"
	// ErrTypeAcquireWithdrawn: the request was withdrawn (SignalWithdraw) or
	// expired because its job's workflow is no longer running. Not retryable.
	ErrTypeAcquireWithdrawn = "AcquireWithdrawn"
)

// MachineState is a pool machine's state.
type MachineState string

// Pool machine states.
const (
	MachineProvisioning MachineState = "provisioning"
	MachineIdle         MachineState = "idle" // provisioned, asleep (or about to sleep), free
	MachineWaking       MachineState = "waking"
	MachineBusy         MachineState = "busy" // leased to a job
	MachineBroken       MachineState = "broken"
	MachineDraining     MachineState = "draining"
)

// AcquireRequest asks the pool for a machine for one job attempt.
type AcquireRequest struct {
	JobID   int64
	Attempt int // 1, 2, ...: a retry after a machine that never picked the job up
	// Exclude lists machines this job already tried (they may be bad).
	Exclude []string `json:",omitempty"`
	// Config is the ConfigFingerprint of the pool's configuration as the
	// sender's worker has it: a pool whose own differs reads it again (so
	// a changed RUNNER_POOLS reaches a running pool with its next job).
	Config string `json:",omitempty"`
	// Repo is the job's repository (owner/name, lower case): the pool's
	// isolation keeps machines to one repository by it. Empty from older
	// jobs: such a request gets a never-used machine, which then runs no
	// other repository's job.
	Repo string `json:",omitempty"`
}

// ConfigFingerprint identifies one version of a pool's configuration.
func ConfigFingerprint(p pools.Pool) string {
	b, err := json.Marshal(p)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Lease is a machine leased to a job, and the runner name the job must
// register on it. The pool maps runner names back to machines on release.
type Lease struct {
	MachineID  string
	RunnerName string
	// Fresh is true when the machine comes straight from its provisioning,
	// still running (it was made for this request, or for min_idle while
	// this request waited).
	Fresh bool
}

// ReleaseRequest returns a machine to the pool, found by machine ID or by
// the runner name GitHub reported in a completed workflow_job.
type ReleaseRequest struct {
	MachineID  string `json:",omitempty"`
	RunnerName string `json:",omitempty"`
	JobID      int64
	// Attempt, if set, must match the lease's attempt too: a late release of
	// an earlier attempt never frees a later lease.
	Attempt int `json:",omitempty"`
	// Broken marks the machine unusable (wake failed, runner never started):
	// the pool deletes it and provisions a replacement if needed.
	Broken bool   `json:",omitempty"`
	Reason string `json:",omitempty"`
	// Repo is the repository (owner/name, lower case) of the job that ran
	// on the machine, on a completed job's release: an isolating pool
	// deletes a machine that ran another repository's job than the one it
	// is bound to (GitHub may hand a runner any queued job its group and
	// labels allow).
	Repo string `json:",omitempty"`
	// Clean: nothing ran on the machine under this lease (its runner never
	// started, or was removed before it took a job). An isolating pool
	// keeps a released machine only on a clean release or the completion
	// of a job of its own repository; any other (a withdrawal, an expired
	// lease, a runner gone after some job) deletes it.
	Clean bool `json:",omitempty"`
}

// WithdrawRequest takes back one job attempt's acquire (Attempt 0: every
// attempt of the job): its queue place, or the machine leased to it.
type WithdrawRequest struct {
	JobID   int64
	Attempt int    `json:",omitempty"`
	Reason  string `json:",omitempty"`
}

// RunnerStarted is the SignalRunnerStarted payload.
type RunnerStarted struct {
	JobID      int64
	RunnerName string
}

// ReconfigureRequest is the SignalReconfigure payload (nothing yet).
type ReconfigureRequest struct{}

// MachineProvisioned is the SignalMachineProvisioned payload: the machine
// a RunnerProvision child made, or why it made none (Error set).
type MachineProvisioned struct {
	Provision string // the child's workflow ID
	MachineID string `json:",omitempty"`
	Error     string `json:",omitempty"`
	// Awake: the machine was left running (ProvisionInput.KeepAwake).
	Awake bool `json:",omitempty"`
}

// ResizeRequest changes a pool's bounds; nil fields are unchanged.
type ResizeRequest struct {
	MinIdle     *int `json:",omitempty"`
	MaxMachines *int `json:",omitempty"`
}

// DrainRequest deletes machines once they are idle: one, or all when MachineID is empty.
type DrainRequest struct {
	MachineID string `json:",omitempty"`
}

// PrewarmRequest wakes up to Count idle machines.
type PrewarmRequest struct {
	Count int
}

// PoolMachine is one machine of a pool's inventory.
type PoolMachine struct {
	MachineID  string // "" while provisioning
	State      MachineState
	JobID      int64  `json:",omitempty"` // the job it is leased to
	Attempt    int    `json:",omitempty"` // the job attempt it is leased to
	RunnerName string `json:",omitempty"`
	// RunningJob (persistent mode) is the job the machine's runner is
	// running, as its RunnerJob reported (SignalRunnerStarted), until the
	// job's completion: whichever job leased the machine, or none. The
	// machine is busy while it is leased or its runner runs a job.
	RunningJob int64 `json:",omitempty"`
	Jobs       int   // jobs leased over its life (reuse)
	Since      time.Time
	// Provision is the RunnerProvision child workflow ID while provisioning.
	Provision string `json:",omitempty"`
	// PersistentRunner is the runner registered on the machine in
	// persistent mode (PersistentRunnerName); it is offline while the
	// machine sleeps, and backed by this machine all the same.
	PersistentRunner string `json:",omitempty"`
	// Reserved: leased to a request carried over continue-as-new whose
	// caller has not come back for it yet. It returns to the pool if the
	// caller does not come back within a few minutes.
	Reserved bool `json:",omitempty"`
	// Awake accounts the machine's running time from the states the pool
	// and its jobs observed (carried across continue-as-new).
	Awake AwakeMeter `json:",omitzero"`
	// AwakeSeconds is Awake so far, as of Inventory.AwakeAsOf; set in
	// inventory answers only.
	AwakeSeconds float64 `json:",omitempty"`
	// WokeAt is when the pool last saw the machine running (zero: asleep,
	// as far as the pool knows); NeedsSleep: it ran a job and is put to
	// sleep unless a waiting job takes it. Carried across continue-as-new.
	WokeAt     time.Time `json:",omitzero"`
	NeedsSleep bool      `json:",omitempty"`
	// Repo is the repository (owner/name, lower case) of the last job
	// leased the machine (set by pools running runner-pool-isolation);
	// with isolation per-repo the machine runs no other repository's job.
	// A machine with Jobs > 0 and no Repo ran jobs before the pool
	// recorded repositories: it is bound to an unknown one.
	Repo string `json:",omitempty"`
	// Mixed: the machine ran jobs of more than one repository (isolation
	// shared): per-repo never leases it.
	Mixed bool `json:",omitempty"`
}

// Inventory is the answer to QueryInventory.
type Inventory struct {
	Pool        string
	MinIdle     int
	MaxMachines int
	Machines    []PoolMachine
	Queue       []int64 // job IDs waiting for a machine, oldest first
	Counts      map[MachineState]int
	// AwakeSeconds is the running time of the pool's machines so far,
	// deleted machines included (since the accounting began), as of
	// AwakeAsOf: the workflow's clock at its latest event. Machines counted
	// awake then (PoolMachine.Awake.Since set) keep counting after it.
	AwakeSeconds float64
	AwakeAsOf    time.Time
}

// WorkflowJobEvent is the part of a GitHub workflow_job delivery Drydock needs.
type WorkflowJobEvent struct {
	DeliveryID     string
	Action         string // queued, in_progress, completed, waiting
	JobID          int64
	RunID          int64
	Name           string
	WorkflowName   string
	Owner, Repo    string
	Org            string // organization login, if the repository belongs to one
	Labels         []string
	RunnerName     string // set on in_progress and completed
	Conclusion     string // completed: success, failure, cancelled, skipped...
	CreatedAt      time.Time
	StartedAt      time.Time
	InstallationID int64
}

// RunnerJobInput starts a RunnerJob.
type RunnerJobInput struct {
	Pool string
	Job  WorkflowJobEvent // the queued event
}

// RunnerJobPhase is where a job is.
type RunnerJobPhase string

// RunnerJob phases.
const (
	JobAcquiring RunnerJobPhase = "acquiring"
	JobWaking    RunnerJobPhase = "waking"
	JobStarting  RunnerJobPhase = "starting_runner"
	JobWaiting   RunnerJobPhase = "waiting_for_pickup"
	JobRunning   RunnerJobPhase = "running"
	JobCompleted RunnerJobPhase = "completed"
	JobAbandoned RunnerJobPhase = "abandoned" // cancelled or run elsewhere before pickup
)

// RunnerJobStatus is the answer to QueryJobStatus.
type RunnerJobStatus struct {
	Phase      RunnerJobPhase
	Pool       string
	JobID      int64
	Attempt    int
	MachineID  string // the machine this job leased and woke
	RunnerName string // the runner this job started
	RanOn      string // the runner GitHub reported running the job (may differ)
	Conclusion string
	QueuedAt   time.Time
	PickedUpAt time.Time
	DoneAt     time.Time
}

// PoolInput starts (or continues) a RunnerPool.
type PoolInput struct {
	Pool  pools.Pool
	Carry *PoolCarry `json:",omitempty"`
}

// PoolCarry is the state a RunnerPool hands over continue-as-new: its
// machines, the requests still waiting (in order) and its counters.
type PoolCarry struct {
	Machines    []PoolMachine
	Queue       []AcquireRequest
	Seq         int // provisioning sequence number, for child workflow IDs
	MinIdle     int // after resizes
	MaxMachines int
	// Pending holds the signals that arrived while the run handed over, in
	// arrival order per signal name; the next run applies them first.
	Pending []PoolSignal `json:",omitempty"`
	// ProvisionFailures counts consecutive failed provisionings (backoff).
	ProvisionFailures int `json:",omitempty"`
	// AwakeClosed is the awake time of every closed interval of the pool's
	// machines, deleted ones included; AwakeCounted the whole seconds of it
	// already emitted as drydock_pool_awake_seconds_total (the fraction
	// left is emitted once it adds up to a second).
	AwakeClosed  time.Duration `json:",omitempty"`
	AwakeCounted int64         `json:",omitempty"`
	// ConfigMinIdle and ConfigMaxMachines are the configuration's bounds
	// the carried MinIdle/MaxMachines were set against: a next run whose
	// configuration says otherwise takes the configuration's (an edit of
	// RUNNER_POOLS wins over an earlier resize). Nil from older runs.
	ConfigMinIdle     *int `json:",omitempty"`
	ConfigMaxMachines *int `json:",omitempty"`
}

// PoolSignal is one signal carried over continue-as-new: exactly one field is set.
type PoolSignal struct {
	Release     *ReleaseRequest     `json:",omitempty"`
	Resize      *ResizeRequest      `json:",omitempty"`
	Drain       *DrainRequest       `json:",omitempty"`
	Prewarm     *PrewarmRequest     `json:",omitempty"`
	Withdraw    *WithdrawRequest    `json:",omitempty"`
	Reconfigure *ReconfigureRequest `json:",omitempty"`
	Provisioned *MachineProvisioned `json:",omitempty"`
	Started     *RunnerStarted      `json:",omitempty"`
}

// MachineCreated is the SignalMachineCreated payload.
type MachineCreated struct {
	Provision string // the RunnerProvision child's workflow ID
	MachineID string
	// RunningAt is when the new machine began running
	// (status.last_transition_at of the create); zero from older children.
	RunningAt time.Time `json:",omitzero"`
}

// MachineObserved is the SignalMachineObserved payload: a machine's phase
// before and after a wake, each with its status.last_transition_at.
type MachineObserved struct {
	MachineID       string
	WasPhase        dedalus.MachinePhase `json:",omitempty"`
	WasTransitionAt time.Time            `json:",omitzero"`
	Phase           dedalus.MachinePhase
	TransitionAt    time.Time
}

// ProvisionInput starts a RunnerProvision child: create one machine of the
// pool, set it up (and in persistent mode register its runner), then put it
// to sleep unless KeepAwake.
type ProvisionInput struct {
	Pool pools.Pool
	Seq  int
	// KeepAwake: the machine is left running for the pool, which hands it
	// to a waiting job or puts it to sleep (every provisioning of a pool
	// at runnerPoolProvisionAwakeVersion; before it, only one for a
	// waiting job).
	KeepAwake bool `json:",omitempty"`
	// Report: when done, the child tells the pool (SignalMachineProvisioned
	// to PoolWorkflowID, whichever run is current): the pool does not wait
	// for its children to continue as new.
	Report bool `json:",omitempty"`
}

// RunnerName is the name of the single-use runner of one job attempt: unique
// per lease, and recognisable as Drydock's (the reconciler removes offline
// runners with this prefix that no machine backs).
func RunnerName(pool string, jobID int64, attempt int) string {
	return fmt.Sprintf("%s%s-%d-%d", RunnerPrefix, pool, jobID, attempt)
}

// PersistentRunnerName is the name of the runner registered once on a
// machine of a persistent-mode pool.
func PersistentRunnerName(pool, machineID string) string {
	return RunnerPrefix + pool + "-" + machineID
}

// RunnerPrefix starts the name of every runner Drydock registers.
const RunnerPrefix = "drydock-"
