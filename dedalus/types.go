package dedalus

import "time"

// MachinePhase is status.phase of a machine (LifecycleStatus.phase in the spec).
type MachinePhase string

// Machine phases, in the order a machine normally moves through them.
const (
	PhaseAccepted         MachinePhase = "accepted"
	PhasePlacementPending MachinePhase = "placement_pending"
	PhaseStarting         MachinePhase = "starting"
	PhaseRunning          MachinePhase = "running"
	PhaseStopping         MachinePhase = "stopping"
	PhaseSleeping         MachinePhase = "sleeping"
	PhaseDestroying       MachinePhase = "destroying"
	PhaseDestroyed        MachinePhase = "destroyed"
	PhaseFailed           MachinePhase = "failed"
)

// Terminal reports whether a machine in this phase can never run again.
func (p MachinePhase) Terminal() bool { return p == PhaseDestroyed || p == PhaseFailed }

// DesiredState is the state the platform is converging a machine to.
type DesiredState string

// Desired states.
const (
	DesiredRunning   DesiredState = "running"
	DesiredSleeping  DesiredState = "sleeping"
	DesiredDestroyed DesiredState = "destroyed"
)

// Phase is the phase a machine reaches once it has converged to this desired state.
func (d DesiredState) Phase() MachinePhase {
	switch d {
	case DesiredSleeping:
		return PhaseSleeping
	case DesiredDestroyed:
		return PhaseDestroyed
	default:
		return PhaseRunning
	}
}

// CreateMachineRequest is the body of POST /v1/machines.
type CreateMachineRequest struct {
	VCPU       float64 `json:"vcpu"`
	MemoryMiB  int64   `json:"memory_mib"`
	StorageGiB int64   `json:"storage_gib"`
	// Autosleep is the idle window before the platform sleeps the machine
	// ("30s", "5m", "7d3h4s", "1800", "never"); empty means the platform default (5m).
	Autosleep string `json:"autosleep,omitempty"`
}

// UpdateMachineRequest is the body of PATCH /v1/machines/{id}. Nil fields are left unchanged.
type UpdateMachineRequest struct {
	VCPU       *float64 `json:"vcpu,omitempty"`
	MemoryMiB  *int64   `json:"memory_mib,omitempty"`
	StorageGiB *int64   `json:"storage_gib,omitempty"`
	Autosleep  *string  `json:"autosleep,omitempty"`
}

// LifecycleStatus is a machine's observed lifecycle state.
type LifecycleStatus struct {
	Phase            MachinePhase `json:"phase"`
	Reason           string       `json:"reason"`
	Retryable        bool         `json:"retryable"`
	Revision         string       `json:"revision"`
	LastTransitionAt time.Time    `json:"last_transition_at"`
	LastProgressAt   time.Time    `json:"last_progress_at"`
	LastError        string       `json:"last_error,omitempty"`
}

// Machine is the spec's LifecycleResponse: what every machine read and mutation returns.
type Machine struct {
	MachineID    string          `json:"machine_id"`
	VCPU         float64         `json:"vcpu"`
	MemoryMiB    int64           `json:"memory_mib"`
	StorageGiB   int64           `json:"storage_gib"`
	DesiredState DesiredState    `json:"desired_state"`
	Status       LifecycleStatus `json:"status"`
	// AutosleepSeconds is the idle window in seconds; 0 means autosleep is disabled.
	AutosleepSeconds int64 `json:"autosleep_seconds"`
}

// Converged reports whether the machine has reached its desired state.
func (m *Machine) Converged() bool { return m.Status.Phase == m.DesiredState.Phase() }

// MachineListItem is one entry of GET /v1/machines.
type MachineListItem struct {
	Machine
	CreatedAt time.Time `json:"created_at"`
}

// Page is one page of a cursor-paged list. NextCursor is empty on the last page.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// ListOptions pages a list call. Zero values mean the server's defaults.
type ListOptions struct {
	Limit  int
	Cursor string
}

// ExecutionStatus is the status of an execution.
type ExecutionStatus string

// Execution statuses.
const (
	ExecWakeInProgress ExecutionStatus = "wake_in_progress"
	ExecQueued         ExecutionStatus = "queued"
	ExecRunning        ExecutionStatus = "running"
	ExecSucceeded      ExecutionStatus = "succeeded"
	ExecFailed         ExecutionStatus = "failed"
	ExecCancelled      ExecutionStatus = "cancelled"
	ExecExpired        ExecutionStatus = "expired"
)

// Terminal reports whether an execution in this status has finished.
func (s ExecutionStatus) Terminal() bool {
	switch s {
	case ExecSucceeded, ExecFailed, ExecCancelled, ExecExpired:
		return true
	}
	return false
}

// CreateExecutionRequest is the body of POST /v1/machines/{id}/executions.
// Command is an argv array: it is never interpreted by a shell unless argv[0] is one.
type CreateExecutionRequest struct {
	Command   []string          `json:"command"`
	Cwd       string            `json:"cwd,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Stdin     string            `json:"stdin,omitempty"`
	TimeoutMS int64             `json:"timeout_ms,omitempty"`
}

// ArtifactRef names an artifact an execution produced.
type ArtifactRef struct {
	ArtifactID string `json:"artifact_id"`
	Name       string `json:"name"`
}

// Execution is the spec's ExecutionResponse.
type Execution struct {
	ExecutionID     string          `json:"execution_id"`
	MachineID       string          `json:"machine_id"`
	Status          ExecutionStatus `json:"status"`
	Command         []string        `json:"command"`
	CreatedAt       time.Time       `json:"created_at"`
	Artifacts       []ArtifactRef   `json:"artifacts,omitempty"`
	Cwd             string          `json:"cwd,omitempty"`
	EnvKeys         []string        `json:"env_keys,omitempty"`
	StartedAt       time.Time       `json:"started_at,omitzero"`
	CompletedAt     time.Time       `json:"completed_at,omitzero"`
	ExpiresAt       time.Time       `json:"expires_at,omitzero"`
	ExitCode        *int64          `json:"exit_code,omitempty"`
	Signal          *int64          `json:"signal,omitempty"`
	ErrorCode       string          `json:"error_code,omitempty"`
	ErrorMessage    string          `json:"error_message,omitempty"`
	RetryAfterMS    int64           `json:"retry_after_ms,omitempty"`
	StdoutBytes     int64           `json:"stdout_bytes,omitempty"`
	StderrBytes     int64           `json:"stderr_bytes,omitempty"`
	StdoutTruncated bool            `json:"stdout_truncated,omitempty"`
	StderrTruncated bool            `json:"stderr_truncated,omitempty"`
}

// ExecutionOutput is the spec's ExecutionOutputResponse.
type ExecutionOutput struct {
	ExecutionID     string `json:"execution_id"`
	Stdout          string `json:"stdout,omitempty"`
	Stderr          string `json:"stderr,omitempty"`
	StdoutBytes     int64  `json:"stdout_bytes,omitempty"`
	StderrBytes     int64  `json:"stderr_bytes,omitempty"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
}

// ExecutionEventType is the kind of an execution event.
type ExecutionEventType string

// Execution event types.
const (
	EventLifecycle ExecutionEventType = "lifecycle"
	EventStdout    ExecutionEventType = "stdout"
	EventStderr    ExecutionEventType = "stderr"
)

// ExecutionEvent is one entry of an execution's event log.
type ExecutionEvent struct {
	Sequence     int64              `json:"sequence"`
	Type         ExecutionEventType `json:"type"`
	At           time.Time          `json:"at"`
	Chunk        string             `json:"chunk,omitempty"`
	Status       ExecutionStatus    `json:"status,omitempty"`
	ExitCode     *int64             `json:"exit_code,omitempty"`
	Signal       *int64             `json:"signal,omitempty"`
	ErrorCode    string             `json:"error_code,omitempty"`
	ErrorMessage string             `json:"error_message,omitempty"`
}

// PreviewStatus is the status of a preview.
type PreviewStatus string

// Preview statuses.
const (
	PreviewWakeInProgress PreviewStatus = "wake_in_progress"
	PreviewReady          PreviewStatus = "ready"
	PreviewClosed         PreviewStatus = "closed"
	PreviewExpired        PreviewStatus = "expired"
	PreviewFailed         PreviewStatus = "failed"
)

// Preview protocols and visibilities.
const (
	ProtocolHTTP  = "http"
	ProtocolHTTPS = "https"

	VisibilityPublic  = "public"
	VisibilityPrivate = "private"
	VisibilityOrg     = "org"
)

// CreatePreviewRequest is the body of POST /v1/machines/{id}/previews.
type CreatePreviewRequest struct {
	Port       int64  `json:"port"`
	Protocol   string `json:"protocol,omitempty"`
	Visibility string `json:"visibility,omitempty"`
}

// Preview is the spec's PreviewResponse. URL is the public address.
type Preview struct {
	PreviewID    string        `json:"preview_id"`
	MachineID    string        `json:"machine_id"`
	Status       PreviewStatus `json:"status"`
	Port         int64         `json:"port"`
	Visibility   string        `json:"visibility"`
	CreatedAt    time.Time     `json:"created_at"`
	Protocol     string        `json:"protocol,omitempty"`
	URL          string        `json:"url,omitempty"`
	ReadyAt      time.Time     `json:"ready_at,omitzero"`
	ExpiresAt    time.Time     `json:"expires_at,omitzero"`
	ErrorCode    string        `json:"error_code,omitempty"`
	ErrorMessage string        `json:"error_message,omitempty"`
	RetryAfterMS int64         `json:"retry_after_ms,omitempty"`
}

// Error codes the API puts in error_code.
const (
	CodeAuthRequired          = "AUTH_REQUIRED"
	CodeAuthInvalid           = "AUTH_INVALID"
	CodeAuthOrgMismatch       = "AUTH_ORG_MISMATCH"
	CodeAuthScopeForbidden    = "AUTH_SCOPE_FORBIDDEN"
	CodeIdempotencyKeyReused  = "IDEMPOTENCY_KEY_REUSED"
	CodeRateLimited           = "RATE_LIMITED"
	CodeRevisionMismatch      = "REVISION_MISMATCH"
	CodeInvalidState          = "INVALID_STATE"
	CodeSleepHoldWindowActive = "SLEEP_HOLD_WINDOW_ACTIVE"
	CodeDependencyUnavailable = "DEPENDENCY_UNAVAILABLE"
)

// ErrorBody is the JSON error envelope the API uses on 401/403/409/429/503.
type ErrorBody struct {
	ErrorCode    string            `json:"error_code"`
	Message      string            `json:"message"`
	Retryable    bool              `json:"retryable"`
	RetryAfterMS int64             `json:"retry_after_ms,omitempty"`
	Details      map[string]string `json:"details,omitempty"`
}

// Problem is the RFC 9457 application/problem+json body (the spec's ErrorModel)
// the API uses for every other error status (400, 404, 422, 500...).
type Problem struct {
	Type     string          `json:"type,omitempty"`
	Title    string          `json:"title,omitempty"`
	Status   int             `json:"status,omitempty"`
	Detail   string          `json:"detail,omitempty"`
	Instance string          `json:"instance,omitempty"`
	Errors   []ProblemDetail `json:"errors,omitempty"`
}

// ProblemDetail is one entry of Problem.Errors (the spec's ErrorDetail).
type ProblemDetail struct {
	Location string `json:"location,omitempty"`
	Message  string `json:"message,omitempty"`
	Value    any    `json:"value,omitempty"`
}

// HTTP headers the API defines.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderIfMatch        = "If-Match"
	HeaderOrgID          = "X-Dedalus-Org-Id"
	HeaderAPIKey         = "x-api-key"
	HeaderLastEventID    = "Last-Event-ID"
	HeaderStorageOpID    = "X-Dedalus-Storage-Operation-Id"
)
