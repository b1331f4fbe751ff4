package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/examples/previewapp"
	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/workflows"
)

// parsePR reads "OWNER/REPO NUMBER".
func parsePR(args []string) (owner, repo string, number int, err error) {
	if len(args) < 2 {
		return "", "", 0, errors.New("want OWNER/REPO NUMBER")
	}
	owner, repo, ok := strings.Cut(args[0], "/")
	if !ok || owner == "" || repo == "" {
		return "", "", 0, fmt.Errorf("%q: want OWNER/REPO", args[0])
	}
	number, err = strconv.Atoi(args[1])
	if err != nil || number <= 0 {
		return "", "", 0, fmt.Errorf("%q: want a pull request number", args[1])
	}
	return owner, repo, number, nil
}

// previewCmd drives a PreviewLifecycle by hand through Temporal.
func previewCmd(ctx context.Context, cfg Config, verb string, args []string, out io.Writer) error {
	owner, repo, number, err := parsePR(args)
	if err != nil {
		return fmt.Errorf("preview %s: %w", verb, err)
	}
	pr := previewPR{owner: owner, repo: repo, number: number, id: workflows.PreviewWorkflowID(owner, repo, number)}
	tc, err := cfg.Temporal.Dial(quietLog())
	if err != nil {
		return err
	}
	defer tc.Close()
	switch verb {
	case "status":
		return previewStatus(ctx, tc, pr.id, out)
	case "redeploy":
		if err := tc.SignalWorkflow(ctx, pr.id, "", workflows.SignalRedeploy, nil); err != nil {
			return fmt.Errorf("signal %s: %w", pr.id, err)
		}
		fmt.Fprintf(out, "redeploy requested for %s\n", pr.id)
		return nil
	case "destroy":
		return previewDestroy(ctx, tc, pr.id, args[2:], out)
	case "start":
		return previewStart(ctx, tc, pr, args[2:], out)
	}
	return errors.New(usage)
}

// previewPR is the pull request a preview command names, and its
// workflow's ID.
type previewPR struct {
	owner, repo string
	number      int
	id          string
}

// previewStatus prints the preview workflow id's status as JSON.
func previewStatus(ctx context.Context, tc client.Client, id string, out io.Writer) error {
	v, err := tc.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err != nil {
		return fmt.Errorf("query %s: %w", id, err)
	}
	var st workflows.PreviewStatus
	if err := v.Get(&st); err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

// previewDestroy asks the preview workflow id to tear down (flag -reason).
func previewDestroy(ctx context.Context, tc client.Client, id string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("preview destroy", flag.ContinueOnError)
	reason := fs.String("reason", "destroyed by an operator (starter)", "shown on the PR comment")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := tc.SignalWorkflow(ctx, id, "", workflows.SignalDestroy, workflows.DestroyRequest{Reason: *reason}); err != nil {
		return fmt.Errorf("signal %s: %w", id, err)
	}
	fmt.Fprintf(out, "destroy requested for %s\n", id)
	return nil
}

// previewStart starts (or signals) the preview workflow of pr with an
// opened pull request event made of the flags.
func previewStart(ctx context.Context, tc client.Client, pr previewPR, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("preview start", flag.ContinueOnError)
	sha := fs.String("sha", "", "head commit to deploy (required)")
	branch := fs.String("branch", "", "head branch (required)")
	cloneURL := fs.String("clone-url", "", "where the commit can be fetched (required)")
	base := fs.String("base", "main", "base branch (its .drydock/preview.yml is used)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sha == "" || *branch == "" || *cloneURL == "" {
		return errors.New("preview start: -sha, -branch and -clone-url are required")
	}
	ev := workflows.PullRequestEvent{Action: "opened", Owner: pr.owner, Repo: pr.repo, Number: pr.number,
		HeadSHA: *sha, HeadRef: *branch, BaseRef: *base, CloneURL: *cloneURL, Sender: "starter"}
	run, err := tc.SignalWithStartWorkflow(ctx, pr.id, workflows.SignalPullRequest, ev, client.StartWorkflowOptions{
		ID: pr.id, TaskQueue: workflows.TaskQueue,
		TypedSearchAttributes: workflowsSA(pr.owner, pr.repo, pr.number),
	}, workflows.PreviewLifecycleName, workflows.PreviewInput{Owner: pr.owner, Repo: pr.repo, Number: pr.number})
	if err != nil {
		return fmt.Errorf("start %s: %w", pr.id, err)
	}
	fmt.Fprintf(out, "started %s (run %s)\n", pr.id, run.GetRunID())
	return nil
}

// demoCmd plays a pull request's life against a running `make dev`: it keeps
// a local git repository holding the demo app (embedded in the binary, so it
// works from any directory) and sends signed pull_request deliveries.
func demoCmd(ctx context.Context, cfg Config, verb string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo "+verb, flag.ContinueOnError)
	repoDir := fs.String("repo-dir", ".dev/demo-repo", "the demo repository (created on first use)")
	number := fs.Int("number", 1, "pull request number")
	owner := fs.String("owner", "drydock-demo", "repository owner")
	name := fs.String("repo", "previewapp", "repository name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := filepath.Abs(*repoDir)
	if err != nil {
		return err
	}
	if err := ensureDemoRepo(ctx, dir); err != nil {
		return err
	}
	action := map[string]string{"open": "opened", "push": "synchronize", "close": "closed"}[verb]
	if action == "" {
		return errors.New(usage)
	}
	if verb == "push" {
		stamp := time.Now().UTC().Format(time.RFC3339)
		if err := os.WriteFile(filepath.Join(dir, "DEMO.md"), []byte("pushed at "+stamp+"\n"), 0o644); err != nil {
			return err
		}
		if err := git(ctx, dir, "add", "DEMO.md"); err != nil {
			return err
		}
		if err := git(ctx, dir, "-c", "user.name=Drydock demo", "-c", "user.email=demo@drydock.invalid", "commit", "-q", "-m", "demo push "+stamp); err != nil {
			return err
		}
	}
	sha, err := gitOut(ctx, dir, "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	body, err := ghfixture.PullRequest(action, ghfixture.PR{
		Owner: *owner, Repo: *name, Number: *number, HeadSHA: sha, HeadRef: "demo-branch", CloneURL: dir,
	})
	if err != nil {
		return err
	}
	if err := deliver(ctx, cfg, "pull_request", body, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "workflow %s, head %s\nwatch it: http://localhost:8233/namespaces/default/workflows/%s\n",
		workflows.PreviewWorkflowID(*owner, *name, *number), sha[:7], workflows.PreviewWorkflowID(*owner, *name, *number))
	return nil
}

// ensureDemoRepo creates, on first use, a git repository in dir holding the
// demo app (examples/previewapp, embedded) on branch main.
func ensureDemoRepo(ctx context.Context, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		return nil
	}
	if err := previewapp.Write(dir); err != nil {
		return fmt.Errorf("demo: write the demo app into %s: %w", dir, err)
	}
	if err := git(ctx, dir, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	if err := git(ctx, dir, "add", "-A"); err != nil {
		return err
	}
	return git(ctx, dir, "-c", "user.name=Drydock demo", "-c", "user.email=demo@drydock.invalid", "commit", "-q", "-m", "the demo app")
}

func git(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(b))
	}
	return nil
}

func gitOut(ctx context.Context, dir string, args ...string) (string, error) {
	b, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// deliver posts a signed delivery to the webhook server, as GitHub would.
func deliver(ctx context.Context, cfg Config, event string, body []byte, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", randomID())
	req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(cfg.WebhookSecret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(out, "%s %s: %s", resp.Status, event, b)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
