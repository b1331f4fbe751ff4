// Package slotsapi is the contract of the PreviewSlots coordinator: its
// workflow ID, handler names and messages. The workflows that use it and
// the activities that call it both import it (activities cannot import
// package workflows).
package slotsapi

import "time"

const (
	// WorkflowName is the coordinator's registered workflow type.
	WorkflowName = "PreviewSlots"
	// WorkflowID is the coordinator's fixed ID: one per namespace.
	WorkflowID = "drydock:preview-slots"

	// UpdateAcquire asks for a slot (Request) and answers at once (Answer):
	// granted, or queued with the request's place. A repeated request of a
	// holder or waiter answers where it stands.
	UpdateAcquire = "acquire_slot"
	// SignalRelease frees the slot or queue place of a preview (its
	// workflow ID, a string). Releasing what is not held changes nothing.
	SignalRelease = "release_slot"
	// SignalGranted tells a queued PreviewLifecycle it holds a slot now
	// (an Answer).
	SignalGranted = "slot_granted"
	// QueryState returns the coordinator's State.
	QueryState = "slots"

	// ErrTypeInvalidRequest: an acquire without a workflow ID or repository.
	ErrTypeInvalidRequest = "InvalidSlotRequest"
)

// Caps are the count caps on open previews; 0 means unlimited.
type Caps struct {
	MaxOpen        int // over every repository (PREVIEW_MAX_OPEN)
	MaxOpenPerRepo int // per repository (PREVIEW_MAX_OPEN_PER_REPO)
}

// Limited reports whether either count cap is set.
func (c Caps) Limited() bool { return c.MaxOpen > 0 || c.MaxOpenPerRepo > 0 }

// Request asks for a slot for one preview.
type Request struct {
	WorkflowID string // the PreviewLifecycle's ID: the slot's owner
	Owner      string
	Repo       string
	Number     int
}

// Answer is where a preview stands.
type Answer struct {
	Granted bool
	// Position is the preview's place in the queue (1 = next), when queued.
	Position int `json:",omitempty"`
	// Open and RepoOpen are the slots held over all repositories and in the
	// preview's repository; MaxOpen and MaxOpenPerRepo the caps then.
	Open, RepoOpen          int
	MaxOpen, MaxOpenPerRepo int
	Queued                  int // waiters, this one included
	// Reason says which cap holds the preview back, for the PR comment,
	// e.g. "queued: 12 previews open, limit 10".
	Reason string `json:",omitempty"`
}

// Holder is a preview that holds a slot: it has (or is creating) a machine.
type Holder struct {
	WorkflowID string
	Repo       string // workflows.RepoKey
	Number     int
	Since      time.Time
	// Seeded: counted from visibility when the coordinator started (a
	// preview whose machine was made before it asked for slots). It holds
	// its slot while its workflow runs and has a machine.
	Seeded bool `json:",omitempty"`
}

// Waiter is a preview queued for a slot.
type Waiter struct {
	WorkflowID string
	Repo       string
	Number     int
	Since      time.Time
}

// State is what the coordinator decides from; it is carried over
// continue-as-new and answers QueryState.
type State struct {
	Holders []Holder `json:",omitempty"`
	Queue   []Waiter `json:",omitempty"`
	// Caps are those of the latest decision (read from the worker's
	// settings before each one).
	Caps Caps
	// Seeded: the running previews with a machine were counted.
	Seeded bool `json:",omitempty"`
}

// Input starts a coordinator run.
type Input struct {
	Carry *State `json:",omitempty"`
}

// CheckInput lists the previews the coordinator counts, for a liveness check.
type CheckInput struct {
	Holders []Holder `json:",omitempty"`
	Waiters []string `json:",omitempty"` // workflow IDs
}

// CheckResult lists those that no longer need their slot or place: their
// workflow is closed or unknown (terminated, timed out), or, for a seeded
// holder, it has no machine any more.
type CheckResult struct {
	Gone []string `json:",omitempty"`
}
