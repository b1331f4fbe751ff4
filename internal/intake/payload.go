package intake

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// A delivery is decoded once, by the Handler, into a small struct holding
// only the fields Drydock reads: the pull_request and workflow_job payloads
// are about 30 KB, almost all of it (users, repositories, URLs) never read,
// and decoding them into go-github's structs cost more CPU than the rest of
// the intake together. The routers take the struct from the Event.
//
// The field names and the nil-as-empty reading follow go-github's getters
// (GetRepo().GetOwner().GetLogin()), so what the workflows receive is what
// they received when the payload went through go-github:
// TestPayloadDecodingMatchesGoGitHub holds the two side by side.

// parsed is what the Handler decoded of a delivery.
type parsed interface {
	// head is what the Handler itself reads: the action, and who sent the
	// event (for the allow-list).
	head() deliveryHead
}

type deliveryHead struct {
	action, owner string
	installation  int64
}

// headPayload is what every delivery is read for; decoding it fails only
// when the body is not JSON or these fields have the wrong type.
type headPayload struct {
	Action     string `json:"action"`
	Repository *struct {
		Owner *struct {
			Login string `json:"login"`
		} `json:"owner"`
	} `json:"repository"`
	Installation *installation `json:"installation"`
}

func (h *headPayload) head() deliveryHead {
	d := deliveryHead{action: h.Action, installation: h.Installation.id()}
	if h.Repository != nil && h.Repository.Owner != nil {
		d.owner = h.Repository.Owner.Login
	}
	return d
}

type installation struct {
	ID int64 `json:"id"`
}

// id is the installation's ID, 0 for none.
func (i *installation) id() int64 {
	if i == nil {
		return 0
	}
	return i.ID
}

// ghRepo is a repository as payloads carry it; ghUser a user or organization.
type ghRepo struct {
	Name       string `json:"name"`
	FullName   string `json:"full_name"`
	Owner      ghUser `json:"owner"`
	Private    bool   `json:"private"`
	Visibility string `json:"visibility"`
	CloneURL   string `json:"clone_url"`
}

type ghUser struct {
	Login string `json:"login"`
	Type  string `json:"type"`
}

type ghName struct {
	Name string `json:"name"`
}

// pullRequestPayload is what Drydock reads of a pull_request delivery.
type pullRequestPayload struct {
	Action       string        `json:"action"`
	Number       int           `json:"number"`
	Repository   *ghRepo       `json:"repository"`
	Installation *installation `json:"installation"`
	Sender       ghUser        `json:"sender"`
	Label        ghName        `json:"label"`
	PullRequest  *struct {
		Number  int      `json:"number"`
		Title   string   `json:"title"`
		HTMLURL string   `json:"html_url"`
		State   string   `json:"state"`
		Draft   bool     `json:"draft"`
		Merged  bool     `json:"merged"`
		User    ghUser   `json:"user"`
		Labels  []ghName `json:"labels"`
		Head    ghBranch `json:"head"`
		Base    ghBranch `json:"base"`
	} `json:"pull_request"`
}

// ghBranch is a pull request's head or base; Repo is null when the head
// repository (a fork) was deleted.
type ghBranch struct {
	SHA  string  `json:"sha"`
	Ref  string  `json:"ref"`
	Repo *ghRepo `json:"repo"`
}

func (p *pullRequestPayload) head() deliveryHead {
	return deliveryHead{action: p.Action, owner: p.repo().Owner.Login, installation: p.Installation.id()}
}

func (p *pullRequestPayload) repo() ghRepo {
	if p.Repository == nil {
		return ghRepo{}
	}
	return *p.Repository
}

// author is who opened the pull request.
func (p *pullRequestPayload) author() ghUser {
	if p.PullRequest == nil {
		return ghUser{}
	}
	return p.PullRequest.User
}

// pullRequestState is "open" or "closed" ("" when the payload has none).
func (p *pullRequestPayload) pullRequestState() string {
	if p.PullRequest == nil {
		return ""
	}
	return p.PullRequest.State
}

// event is what the intake signals the PreviewLifecycle workflow with.
func (p *pullRequestPayload) event(deliveryID string) workflows.PullRequestEvent {
	repo := p.repo()
	out := workflows.PullRequestEvent{
		DeliveryID: deliveryID, Action: p.Action, Owner: repo.Owner.Login, Repo: repo.Name, Number: p.Number,
		Sender: p.Sender.Login, InstallationID: p.Installation.id(),
	}
	pr := p.PullRequest
	if pr == nil {
		out.Fork = true // no head repository: nothing vouches for it
		return out
	}
	out.Title, out.HTMLURL, out.Draft, out.Merged = pr.Title, pr.HTMLURL, pr.Draft, pr.Merged
	out.HeadSHA, out.HeadRef, out.BaseRef = pr.Head.SHA, pr.Head.Ref, pr.Base.Ref
	if out.Number == 0 {
		out.Number = pr.Number
	}
	base, head := repo.FullName, ""
	if pr.Base.Repo != nil && pr.Base.Repo.FullName != "" {
		base = pr.Base.Repo.FullName
	}
	if pr.Head.Repo != nil {
		out.CloneURL, head = pr.Head.Repo.CloneURL, pr.Head.Repo.FullName
	}
	// A head repository that is gone (deleted fork) is treated as a fork:
	// nothing vouches for it.
	out.Fork = head == "" || !strings.EqualFold(head, base)
	for _, l := range pr.Labels {
		if l.Name != "" {
			out.Labels = append(out.Labels, l.Name)
		}
	}
	return out
}

// workflowJobPayload is what Drydock reads of a workflow_job delivery.
type workflowJobPayload struct {
	Action       string        `json:"action"`
	Repository   *ghRepo       `json:"repository"`
	Installation *installation `json:"installation"`
	Organization ghUser        `json:"organization"`
	WorkflowJob  *struct {
		ID           int64    `json:"id"`
		RunID        int64    `json:"run_id"`
		Name         string   `json:"name"`
		WorkflowName string   `json:"workflow_name"`
		RunnerName   string   `json:"runner_name"`
		Conclusion   string   `json:"conclusion"`
		CreatedAt    ghTime   `json:"created_at"`
		StartedAt    ghTime   `json:"started_at"`
		Labels       []string `json:"labels"`
	} `json:"workflow_job"`
}

func (p *workflowJobPayload) head() deliveryHead {
	return deliveryHead{action: p.Action, owner: p.repo().Owner.Login, installation: p.Installation.id()}
}

func (p *workflowJobPayload) repo() ghRepo {
	if p.Repository == nil {
		return ghRepo{}
	}
	return *p.Repository
}

// event is what the runner workflows receive of the delivery.
func (p *workflowJobPayload) event(deliveryID string) runnerapi.WorkflowJobEvent {
	repo := p.repo()
	out := runnerapi.WorkflowJobEvent{
		DeliveryID: deliveryID, Action: p.Action, Owner: repo.Owner.Login, Repo: repo.Name, Org: p.Organization.Login,
		InstallationID: p.Installation.id(),
	}
	if out.Org == "" && repo.Owner.Type == "Organization" {
		out.Org = out.Owner
	}
	wj := p.WorkflowJob
	if wj == nil {
		return out
	}
	out.JobID, out.RunID, out.Name, out.WorkflowName = wj.ID, wj.RunID, wj.Name, wj.WorkflowName
	out.RunnerName, out.Conclusion, out.CreatedAt, out.StartedAt = wj.RunnerName, wj.Conclusion, wj.CreatedAt.Time, wj.StartedAt.Time
	for _, l := range wj.Labels {
		if l = strings.TrimSpace(l); l != "" {
			out.Labels = append(out.Labels, l)
		}
	}
	return out
}

// ghTime reads a timestamp as go-github's Timestamp does: an RFC 3339
// string, or Unix seconds (milliseconds past the year 3000); null is zero.
type ghTime struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *ghTime) UnmarshalJSON(data []byte) error {
	str := string(data)
	if str == "null" {
		return nil
	}
	if i, err := strconv.ParseInt(str, 10, 64); err == nil {
		t.Time = time.Unix(i, 0)
		if t.Time.Year() > 3000 {
			t.Time = time.Unix(0, i*1e6)
		}
		return nil
	}
	var err error
	t.Time, err = time.Parse(`"`+time.RFC3339+`"`, str)
	return err
}

// parsePayload decodes body as the delivery of event: the struct its router
// reads, or the head alone for the events Drydock only acknowledges.
func parsePayload(event string, body []byte) (parsed, error) {
	var p parsed
	switch event {
	case "pull_request":
		p = &pullRequestPayload{}
	case "workflow_job":
		p = &workflowJobPayload{}
	default:
		p = &headPayload{}
	}
	return p, json.Unmarshal(body, p)
}

// DecodePullRequest is what the intake makes of a pull_request delivery
// (before the preview policy adds ApprovalLabel): what it signals the
// PreviewLifecycle workflow with.
func DecodePullRequest(body []byte, deliveryID string) (workflows.PullRequestEvent, error) {
	var p pullRequestPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return workflows.PullRequestEvent{}, err
	}
	return p.event(deliveryID), nil
}

// DecodeWorkflowJob is what the intake makes of a workflow_job delivery:
// what the runner workflows receive.
func DecodeWorkflowJob(body []byte, deliveryID string) (runnerapi.WorkflowJobEvent, error) {
	var p workflowJobPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return runnerapi.WorkflowJobEvent{}, err
	}
	return p.event(deliveryID), nil
}

// problems collects what a delivery lacks (missing) and what it gets wrong
// (invalid), for the answer that says why it cannot be acted on.
type problems struct{ missing, invalid []string }

// present reports whether v is not blank, and counts field as missing when
// it is.
func (ps *problems) present(field, v string) bool {
	if strings.TrimSpace(v) == "" {
		ps.missing = append(ps.missing, field)
		return false
	}
	return true
}

// githubName checks that field's value v is a GitHub name.
func (ps *problems) githubName(field, v string) {
	if ps.present(field, v) && !githubName.MatchString(v) {
		ps.invalid = append(ps.invalid, field+" is not a GitHub name")
	}
}

// reason is "" when there is no problem, or why the payload of a kind
// delivery cannot be acted on.
func (ps *problems) reason(kind string) string {
	var parts []string
	if len(ps.missing) > 0 {
		parts = append(parts, "missing "+strings.Join(ps.missing, ", "))
	}
	parts = append(parts, ps.invalid...)
	if len(parts) == 0 {
		return ""
	}
	return kind + " payload: " + strings.Join(parts, "; ")
}
