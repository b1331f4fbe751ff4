package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/workflows"
)

// openPreview delivers `opened` for a PR whose head is a fresh local
// repository, with spec as its preview spec, and waits until its preview is
// ready.
func openPreview(ctx context.Context, h *harness.Harness, dir, owner, repo string, number int, spec string) (workflows.PreviewStatus, error) {
	h.GH.SetFile(owner, repo, "main", ".drydock/preview.yml", spec)
	src, err := harness.NewGitRepo(dir)
	if err != nil {
		return workflows.PreviewStatus{}, err
	}
	sha, err := src.Commit("bench")
	if err != nil {
		return workflows.PreviewStatus{}, err
	}
	pr := ghfixture.PR{Owner: owner, Repo: repo, Number: number, HeadSHA: sha, HeadRef: "bench", CloneURL: src.Dir}
	body, err := h.PullRequest("opened", pr)
	if err != nil {
		return workflows.PreviewStatus{}, err
	}
	code, err := h.Deliver(ctx, "pull_request", fmt.Sprintf("open-%s-%s-%d", owner, repo, number), body)
	if err != nil {
		return workflows.PreviewStatus{}, err
	}
	if code != http.StatusAccepted {
		return workflows.PreviewStatus{}, fmt.Errorf("opened delivery: HTTP %d", code)
	}
	return waitPreview(ctx, h, workflows.PreviewWorkflowID(owner, repo, number), 2*time.Minute, func(st workflows.PreviewStatus) bool {
		return st.Phase == workflows.PreviewReady && st.DeployedSHA == sha
	})
}

// openPrivatePreview lets benchUser read owner/repo, opens its preview
// (which the worker's PREVIEW_VISIBILITY_REPOS makes private), checks that
// it is private, and logs benchUser in to it: the status and the session
// cookie.
func openPrivatePreview(ctx context.Context, h *harness.Harness, dir, owner, repo string, number int, spec string) (workflows.PreviewStatus, *http.Cookie, error) {
	h.GH.AddCollaborator(owner, repo, benchUser, "read")
	st, err := openPreview(ctx, h, dir, owner, repo, number, spec)
	if err != nil {
		return st, nil, err
	}
	if st.Visibility != "private" {
		return st, nil, fmt.Errorf("preview %s/%s is %q, not private", owner, repo, st.Visibility)
	}
	cookie, err := h.Login(ctx, benchUser, owner, repo, number)
	if err != nil {
		return st, nil, err
	}
	return st, cookie, nil
}

// waitPreview polls the status query until ok or timeout; a failed preview
// is an error.
func waitPreview(ctx context.Context, h *harness.Harness, id string, timeout time.Duration, ok func(workflows.PreviewStatus) bool) (workflows.PreviewStatus, error) {
	deadline := time.Now().Add(timeout)
	var st workflows.PreviewStatus
	var err error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, err = h.PreviewStatus(ctx, id, 10*time.Second)
		if err == nil && ok(st) {
			return st, nil
		}
		if err == nil && st.Phase == workflows.PreviewFailed {
			return st, fmt.Errorf("preview %s failed: %s", id, st.LastError)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return st, fmt.Errorf("preview %s: %w", id, err)
	}
	return st, fmt.Errorf("preview %s: timed out in phase %s", id, st.Phase)
}

// machinePhase is a machine's phase in the emulator ("" when unknown).
func machinePhase(h *harness.Harness, id string) string {
	for _, m := range h.Emu.Stats().Machines {
		if m.MachineID == id {
			return strings.ToLower(string(m.Phase))
		}
	}
	return ""
}

// waitMachinePhase waits until the emulator reports the machine in phase.
func waitMachinePhase(ctx context.Context, h *harness.Harness, id, phase string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if machinePhase(h, id) == phase {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("machine %s not %s within %s (now %q)", id, phase, timeout, machinePhase(h, id))
}
