package workflows

import "time"

// The PreviewLifecycle workflow (one per open pull request, ID
// PreviewWorkflowID) and the names of its handlers. The webhook server, the
// preview router and the starter talk to it only through these.
const (
	// PreviewLifecycleName is the registered workflow type name.
	PreviewLifecycleName = "PreviewLifecycle"

	// SignalPullRequest carries a PullRequestEvent (opened, reopened,
	// synchronize, ready_for_review, closed, labeled, unlabeled).
	SignalPullRequest = "pull_request"
	// SignalRedeploy asks for a rebuild and restart of the current head (no payload).
	SignalRedeploy = "redeploy"
	// SignalDestroy tears the preview down and completes the workflow (DestroyRequest).
	SignalDestroy = "destroy"
	// SignalTouch reports preview traffic, which keeps a preview from going
	// stale (no payload). The router sends it at most once a minute per preview.
	SignalTouch = "touch"

	// UpdateWake wakes the preview's machine and returns a WakeResult once it
	// runs. Concurrent wakes coalesce into one Dedalus wake call. Its
	// errors are ApplicationErrors typed ErrTypePreviewTornDown (also from
	// the validator: the preview is going away), ErrTypePreviewNotReady
	// (still deploying after the wake waited its bound: retry later, with a
	// new update ID), ErrTypePreviewHandover (also from the validator: the
	// run is continuing as new; retry at once) and ErrTypePreviewFailed.
	// A caller that lost its answer (a timeout) should send the same update
	// ID again: it attaches to the Update in flight instead of adding one.
	UpdateWake = "wake"

	// QueryStatus returns a PreviewStatus.
	QueryStatus = "status"
)

// PreviewInput starts a PreviewLifecycle. The webhook passes only the PR's
// identity; the events arrive as SignalPullRequest (SignalWithStart).
type PreviewInput struct {
	Owner  string
	Repo   string
	Number int
	// Carry is the state handed over by continue-as-new; nil on a fresh start.
	Carry *PreviewCarry `json:",omitempty"`
}

// PullRequestEvent is the part of a GitHub pull_request delivery the
// workflow needs. Every field is data: it reaches commands only as
// environment variables, never inside a shell string.
type PullRequestEvent struct {
	DeliveryID string // X-GitHub-Delivery, for deduplication
	Action     string
	Owner      string // base repository owner
	Repo       string // base repository name
	Number     int
	Title      string
	HTMLURL    string
	HeadSHA    string
	HeadRef    string // branch name (untrusted)
	BaseRef    string
	CloneURL   string // clone URL of the head repository
	Fork       bool   // head repository differs from the base repository
	Draft      bool
	Merged     bool
	Labels     []string
	Sender     string
	// InstallationID is the GitHub App installation that sent the event (0 if none).
	InstallationID int64
	// ApprovalLabel is the opt-in label (PREVIEW_FORK_LABEL) when it is what
	// admits the pull request: a fork's, or any with PREVIEW_REQUIRE_LABEL.
	// The workflow then asks GitHub before every deploy whether the pull
	// request is open and carries it; for a fork, a "labeled" event approves
	// its head SHA and only that commit is deployed. "" = no label needed.
	ApprovalLabel string `json:",omitempty"`
}

// DestroyRequest is the payload of SignalDestroy.
type DestroyRequest struct {
	Reason string // shown on the PR comment, e.g. "destroyed by alice"
}

// WakeResult is what UpdateWake returns: where the router proxies to.
type WakeResult struct {
	URL       string // the machine's preview URL (the upstream)
	MachineID string
}

// Preview visibilities: who may open a preview (and the visibility of the
// Dedalus preview the router proxies to).
const (
	// VisibilityPublic: anyone with the URL.
	VisibilityPublic = "public"
	// VisibilityOrg: members of the repository owner's organization.
	VisibilityOrg = "org"
	// VisibilityPrivate: people with read access to the repository.
	VisibilityPrivate = "private"
)

// PreviewPhase is where a preview is in its life.
type PreviewPhase string

// Preview phases.
const (
	PreviewPending      PreviewPhase = "pending"      // waiting for a deployable event
	PreviewProvisioning PreviewPhase = "provisioning" // creating the machine and first deploy
	PreviewDeploying    PreviewPhase = "deploying"    // redeploying a new head
	PreviewReady        PreviewPhase = "ready"
	PreviewFailed       PreviewPhase = "failed"
	PreviewTearingDown  PreviewPhase = "tearing_down"
	PreviewDestroyed    PreviewPhase = "destroyed"
)

// PreviewStatus is the answer to QueryStatus.
type PreviewStatus struct {
	Phase       PreviewPhase
	Owner, Repo string
	Number      int
	MachineID   string
	PreviewID   string
	URL         string // the Dedalus preview URL
	HeadSHA     string // newest head seen
	DeployedSHA string // head the running app was built from
	LastError   string
	// Visibility is who may open the preview: VisibilityPublic,
	// VisibilityOrg or VisibilityPrivate ("" from runs before the setting:
	// the router treats it as private). The preview router reads it with
	// QueryStatus before it serves or wakes anything.
	Visibility     string `json:",omitempty"`
	CreatedAt      time.Time
	ReadyAt        time.Time
	LastDeployAt   time.Time
	LastActivityAt time.Time
	Wakes          int
	// AwakeSeconds is how long the preview's machines have run so far, as
	// of AwakeAsOf (the workflow's clock at its latest event): machines are
	// billed only while awake. While AwakeSince is set the machine is
	// counted as running from then on, so the figure grows after AwakeAsOf
	// until Drydock sees the machine asleep or gone. Set in query answers
	// only.
	AwakeSeconds float64   `json:",omitempty"`
	AwakeSince   time.Time `json:",omitzero"`
	AwakeAsOf    time.Time `json:",omitzero"`
}

// PreviewCarry is the state a PreviewLifecycle carries over continue-as-new.
type PreviewCarry struct {
	Status          PreviewStatus
	Event           PullRequestEvent // newest event seen
	SetupDone       bool
	SeedDone        bool
	DeploymentID    int64
	SeenDeliveries  []string
	Pending         []PullRequestEvent // signals drained before continuing as new
	PendingRedeploy bool
	// Awake accounts the running time of the preview's machines (all of
	// them: a failed deploy's deleted machine, then the next one).
	Awake AwakeMeter `json:",omitzero"`
	// AwakeCounted is the whole seconds of Awake.Total emitted as
	// drydock_preview_awake_seconds_total.
	AwakeCounted int64 `json:",omitempty"`
	// ReportedAt is when the PR comment was last written (it bounds the
	// refreshes of the awake time that wakes make).
	ReportedAt time.Time `json:",omitzero"`
	// FailedSHA is the head whose deploy failed: it is not deployed again
	// until a push or a redeploy.
	FailedSHA string `json:",omitempty"`
	// SpecVisibility is the visibility the newest spec read asked for ("" =
	// none: the operator's setting applies).
	SpecVisibility string `json:",omitempty"`
	// ExposedVisibility is the visibility the Dedalus preview was created
	// with ("" = before the setting: public); a deploy whose visibility
	// differs replaces the Dedalus preview.
	ExposedVisibility string `json:",omitempty"`
	// ApprovedSHA is the fork head a maintainer approved by adding the
	// opt-in label (the head of the "labeled" event); a fork's other heads
	// are not deployed.
	ApprovedSHA string `json:",omitempty"`
	// LabeledSHAs are the heads of the "labeled" deliveries received since
	// the last check with GitHub. A delivery may be old (a redelivery, or
	// GitHub's own disorder): the check approves GitHub's current head only
	// if one of them names it, and forgets the others.
	LabeledSHAs []string `json:",omitempty"`
	// Teardown says why the preview is being torn down ("" = it is not);
	// a run that continues as new with one set tears down at once.
	Teardown string `json:",omitempty"`
	// Slot is where the preview stands with the PreviewSlots coordinator:
	// SlotHeld, SlotQueued or "" (it asked for nothing: no cap was set, or
	// a run from before the caps).
	Slot string `json:",omitempty"`
}
