package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/previewspec"
)

// Error types of the preview activities.
const (
	ErrTypeInvalidSpec  = "InvalidPreviewSpec"
	ErrTypeAppUnhealthy = "AppUnhealthy"
)

// Previews holds the worker-side settings of preview environments and the
// activities that need them.
type Previews struct {
	// DefaultSpecPath is the server's default spec file (YAML or JSON), used
	// when a repository has no .drydock/preview.yml. Empty: none.
	DefaultSpecPath string
	// PublicURLTemplate renders the URL reviewers open (the preview router):
	// {number}, {owner} and {repo} are replaced.
	PublicURLTemplate string
	// StaleAfter tears down previews without a push or traffic for this long (0: never).
	StaleAfter time.Duration
	// KeepFailedMachine keeps a failed preview's machine for debugging until
	// the next push or close.
	KeepFailedMachine bool
	// AwakeReportEvery bounds how often wakes refresh the awake time on the
	// PR comment (0: the workflow's default, 10m; negative: never).
	AwakeReportEvery time.Duration
	// Visibility is who may open a preview (previewspec.Visibility*) when
	// neither the repository's spec nor VisibilityRepos says: PREVIEW_VISIBILITY.
	Visibility string
	// VisibilityRepos is the visibility of given repositories, keyed by
	// lower-case "owner/repo": PREVIEW_VISIBILITY_REPOS.
	VisibilityRepos map[string]string
	// VisibilityMax is the most open visibility a repository's spec may ask
	// for ("" = no ceiling): PREVIEW_VISIBILITY_MAX.
	VisibilityMax string
	// Caps limit open previews and their machines' size (PREVIEW_MAX_*).
	Caps PreviewCaps
	// HTTPClient probes app health (default: a client with a 5s timeout).
	HTTPClient *http.Client
	// HeartbeatEvery is how often LoadSpec heartbeats while it reads the
	// default spec (default 2s).
	HeartbeatEvery time.Duration
}

// PreviewSettings is what a PreviewLifecycle run needs to know of the worker's
// configuration. It is read once per run through a local activity, so it is
// recorded in history and replays deterministically.
type PreviewSettings struct {
	PublicURL         string
	StaleAfter        time.Duration
	KeepFailedMachine bool
	// AwakeReportEvery is the least interval between two refreshes of the
	// awake time on the PR comment after wakes: 0 (histories from before the
	// setting) means the default, negative means never.
	AwakeReportEvery time.Duration `json:",omitempty"`
	// Visibility is the operator's visibility for the repository
	// (PREVIEW_VISIBILITY_REPOS, else PREVIEW_VISIBILITY); a spec's own
	// visibility wins over it, up to VisibilityMax. "" (histories from
	// before the setting) is private.
	Visibility string `json:",omitempty"`
	// VisibilityMax caps the visibility a spec may ask for ("" = no ceiling).
	VisibilityMax string `json:",omitempty"`
}

// Settings returns the preview settings for one pull request.
func (p *Previews) Settings(_ context.Context, owner, repo string, number int) (PreviewSettings, error) {
	return PreviewSettings{
		PublicURL:         PublicURL(p.PublicURLTemplate, owner, repo, number),
		StaleAfter:        p.StaleAfter,
		KeepFailedMachine: p.KeepFailedMachine,
		AwakeReportEvery:  p.AwakeReportEvery,
		Visibility:        p.repoVisibility(owner, repo),
		VisibilityMax:     p.VisibilityMax,
	}, nil
}

// repoVisibility is the operator's visibility for owner/repo: the
// repository's own entry, else the default, else private.
func (p *Previews) repoVisibility(owner, repo string) string {
	if v, ok := p.VisibilityRepos[strings.ToLower(owner+"/"+repo)]; ok {
		return v
	}
	if p.Visibility == "" {
		return previewspec.VisibilityPrivate
	}
	return p.Visibility
}

// ParseVisibilityRepos reads PREVIEW_VISIBILITY_REPOS: comma-separated
// "owner/repo=visibility" entries. Keys are lower case (GitHub names are
// case-insensitive); an entry that is not owner/repo, names an unknown
// visibility or repeats a repository is an error naming it.
func ParseVisibilityRepos(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		repo, vis, ok := strings.Cut(entry, "=")
		repo, vis = strings.ToLower(strings.TrimSpace(repo)), strings.TrimSpace(vis)
		owner, name, isRepo := strings.Cut(repo, "/")
		switch {
		case !ok || !isRepo || owner == "" || name == "" || strings.ContainsAny(name, "/ ") || strings.ContainsAny(owner, " "):
			return nil, fmt.Errorf("%q: want owner/repo=visibility", entry)
		case !previewspec.ValidVisibility(vis):
			return nil, fmt.Errorf("%q: visibility must be public, org or private", entry)
		}
		if _, dup := out[repo]; dup {
			return nil, fmt.Errorf("%q: %s is named twice", entry, repo)
		}
		out[repo] = vis
	}
	return out, nil
}

// PublicURL fills a URL template's {number}, {owner} and {repo}.
func PublicURL(template, owner, repo string, number int) string {
	return strings.NewReplacer("{number}", strconv.Itoa(number), "{owner}", strings.ToLower(owner),
		"{repo}", strings.ToLower(repo)).Replace(template)
}

// LoadSpecInput is the spec text fetched from the repository ("" when the
// repository has none) and where it came from, for error messages.
type LoadSpecInput struct {
	Content string
	Source  string
}

// LoadSpec parses and validates a preview spec, falling back to the server's
// default file when the repository has none. An invalid spec is a
// non-retryable InvalidPreviewSpec error whose message lists every problem.
func (p *Previews) LoadSpec(ctx context.Context, in LoadSpecInput) (previewspec.Spec, error) {
	defer heartbeatDuring(ctx, p.HeartbeatEvery, "LoadSpec")()
	content, source := in.Content, in.Source
	if content == "" {
		if p.DefaultSpecPath == "" {
			return previewspec.Spec{}, temporal.NewNonRetryableApplicationError(
				"no preview spec: the repository has no "+previewspec.RepoPath+" on its base branch and no default spec is configured (PREVIEW_DEFAULT_SPEC)",
				ErrTypeInvalidSpec, nil)
		}
		b, err := os.ReadFile(p.DefaultSpecPath)
		if err != nil {
			return previewspec.Spec{}, fmt.Errorf("read default preview spec: %w", err)
		}
		content, source = string(b), "the default spec"
	}
	s, err := previewspec.Parse([]byte(content))
	if err != nil {
		return previewspec.Spec{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", source, err), ErrTypeInvalidSpec, nil)
	}
	return *s, nil
}

// HealthInput says where an app should answer and for how long to wait.
type HealthInput struct {
	URL     string // preview URL + health path
	Timeout time.Duration
}

// WaitHealthy polls the app through its preview until it answers 2xx or 3xx.
// Redirects are not followed: a 3xx is the app answering, and following it
// would let the app point the worker at any URL it can reach (SSRF). A
// timeout is a non-retryable AppUnhealthy error whose message carries the
// URL and the last answer for operators (workflow history, the status'
// LastError); the workflow never copies it to the PR.
func (p *Previews) WaitHealthy(ctx context.Context, in HealthInput) error {
	hc := noRedirects(p.HTTPClient)
	deadline := time.Now().Add(in.Timeout)
	delay := 100 * time.Millisecond
	last := "no answer yet"
	for attempt := 1; ; attempt++ {
		activity.RecordHeartbeat(ctx, attempt)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL, nil)
		if err != nil {
			return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidArgument, nil)
		}
		// Each probe gets a fresh connection, closed after the answer: a
		// worker that deploys thousands of previews would otherwise keep an
		// idle connection (two goroutines and their buffers) to the last
		// hundred apps it checked, which it will not call again.
		req.Close = true
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 400 {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else if ctx.Err() == nil {
			last = err.Error()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("the app did not answer %s within %s (last: %s)", in.URL, in.Timeout, last), ErrTypeAppUnhealthy, nil)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// noRedirects returns a copy of hc (default: a 5s timeout) that returns a
// redirect as the answer instead of following it.
func noRedirects(hc *http.Client) *http.Client {
	c := &http.Client{Timeout: 5 * time.Second}
	if hc != nil {
		cp := *hc
		c = &cp
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// IsInvalidSpec reports whether err is an InvalidPreviewSpec failure.
func IsInvalidSpec(err error) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == ErrTypeInvalidSpec
}
