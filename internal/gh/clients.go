package gh

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v62/github"

	"github.com/drydock-dev/drydock/internal/metrics"
)

const userAgent = "drydock (+https://github.com/drydock-dev/drydock)"

// ErrNoInstallation is returned in App mode when neither the event nor
// GITHUB_APP_INSTALLATION_ID names an installation.
var ErrNoInstallation = errors.New("no GitHub App installation ID: the event carried none and GITHUB_APP_INSTALLATION_ID is not set")

// Clients hands out authenticated go-github clients. With a token there is
// one shared client; with a GitHub App there is one cached client per
// installation, whose transport (ghinstallation) mints installation tokens
// and refreshes them a minute before they expire. Safe for concurrent use.
type Clients struct {
	base      *url.URL
	transport http.RoundTripper

	// token mode
	tokenClient *github.Client
	token       string

	// App mode
	appID               int64
	key                 *rsa.PrivateKey
	defaultInstallation int64

	mu            sync.Mutex
	installations map[int64]*github.Client

	selfMu    sync.Mutex
	self      string
	selfKnown bool

	metrics *metrics.GitHub
}

// SetMetrics records every answer's rate-limit headers in m (call before
// the first request).
func (c *Clients) SetMetrics(m *metrics.GitHub) {
	c.metrics = m
	if c.tokenClient != nil {
		c.tokenClient = c.newClient(&http.Client{Transport: c.observed("token", c.transport)}).WithAuthToken(c.token)
	}
}

// observed wraps next so that its answers' rate-limit headers are recorded
// under credential.
func (c *Clients) observed(credential string, next http.RoundTripper) http.RoundTripper {
	if c.metrics == nil {
		return next
	}
	return rateLimitRecorder{next: next, credential: credential, m: c.metrics}
}

// isAppJWT: the request is authenticated as the App itself (a JWT, three
// dot-separated parts), not by a token.
func isAppJWT(auth string) bool {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	return ok && strings.Count(tok, ".") == 2
}

// rateLimitRecorder records X-RateLimit-* of every GitHub answer.
type rateLimitRecorder struct {
	next       http.RoundTripper
	credential string
	m          *metrics.GitHub
}

func (t rateLimitRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	limit, lerr := strconv.Atoi(resp.Header.Get("X-RateLimit-Limit"))
	remaining, rerr := strconv.Atoi(resp.Header.Get("X-RateLimit-Remaining"))
	credential := t.credential
	if isAppJWT(req.Header.Get("Authorization")) {
		credential = "app" // an installation token being minted: the App's budget
	}
	t.m.Response(credential, resp.StatusCode, resp.Header.Get("X-RateLimit-Resource"), limit, remaining, lerr == nil && rerr == nil)
	return resp, nil
}

// NewClients validates cfg and builds the factory. It does not contact
// GitHub. cfg must be Configured: local mode has no Clients.
func NewClients(cfg Config) (*Clients, error) {
	if !cfg.Configured() {
		return nil, errors.New("GitHub is not configured: set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, _ := cfg.apiURL() // validated above
	c := &Clients{base: base, transport: defaultTransport(), token: cfg.Token}
	if cfg.Token != "" {
		c.tokenClient = c.newClient(&http.Client{Transport: c.transport}).WithAuthToken(cfg.Token)
		return c, nil
	}
	key, err := cfg.privateKey()
	if err != nil {
		return nil, err
	}
	c.appID, c.key, c.defaultInstallation = cfg.AppID, key, cfg.AppInstallationID
	c.installations = make(map[int64]*github.Client)
	return c, nil
}

func defaultTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 60 * time.Second
	return t
}

// BaseURL is the REST API base URL the clients talk to (with a trailing slash).
func (c *Clients) BaseURL() string { return c.base.String() }

// Mode is "token" or "app", for logs.
func (c *Clients) Mode() string {
	if c.tokenClient != nil {
		return "token"
	}
	return "app"
}

func (c *Clients) newClient(hc *http.Client) *github.Client {
	gc := github.NewClient(hc)
	b := *c.base
	gc.BaseURL = &b
	gc.UserAgent = userAgent
	return gc
}

// ForInstallation returns the client to use for an event of installation id.
// With a token, id is ignored. With an App, id 0 means the configured
// default installation; ErrNoInstallation when there is none.
func (c *Clients) ForInstallation(id int64) (*github.Client, error) {
	if c.tokenClient != nil {
		return c.tokenClient, nil
	}
	if id == 0 {
		id = c.defaultInstallation
	}
	if id <= 0 {
		return nil, ErrNoInstallation
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gc, ok := c.installations[id]; ok {
		return gc, nil
	}
	// One AppsTransport per installation: ghinstallation writes to it while
	// refreshing a token, so sharing it between installations would race.
	// Token mints are the App's calls (its JWT); the rest, the installation's.
	tr := errorBodyBuffer{c.observed("installation:"+strconv.FormatInt(id, 10), c.transport)}
	itr := ghinstallation.NewFromAppsTransport(ghinstallation.NewAppsTransportFromPrivateKey(tr, c.appID, c.key), id)
	itr.BaseURL = strings.TrimSuffix(c.base.String(), "/") // also where tokens are minted (GHES: .../api/v3)
	gc := c.newClient(&http.Client{Transport: itr})
	c.installations[id] = gc
	return gc, nil
}

// AppClient returns a client authenticated as the GitHub App itself (its
// JWT), for the App's own endpoints (GET /app, its installations); an
// error with a token, which has no App.
func (c *Clients) AppClient() (*github.Client, error) {
	if c.tokenClient != nil {
		return nil, errors.New("GitHub is configured with a token, not an App")
	}
	tr := errorBodyBuffer{c.observed("app", c.transport)}
	return c.newClient(&http.Client{Transport: ghinstallation.NewAppsTransportFromPrivateKey(tr, c.appID, c.key)}), nil
}

// API returns the reporting operations for installation id (see ForInstallation).
func (c *Clients) API(installationID int64) (*API, error) {
	gc, err := c.ForInstallation(installationID)
	if err != nil {
		return nil, err
	}
	return &API{client: gc, self: c.identity}, nil
}

// identity is the login Drydock comments as: the token's user, or
// "<app-slug>[bot]" for an App. "" means unknown (GitHub refused to say), in
// which case comments are matched by marker alone.
func (c *Clients) identity(ctx context.Context) (string, error) {
	c.selfMu.Lock()
	defer c.selfMu.Unlock()
	if c.selfKnown {
		return c.self, nil
	}
	var login string
	var err error
	if c.tokenClient != nil {
		login, err = userLogin(ctx, c.tokenClient)
	} else {
		// GET /app authenticates as the App itself (JWT), not an installation.
		ac, _ := c.AppClient() // App mode here
		var app *github.App
		app, _, err = ac.Apps.Get(ctx, "")
		if err == nil && app.GetSlug() != "" {
			login = app.GetSlug() + "[bot]"
		}
		err = unknownIfRefused(err)
	}
	if err != nil {
		return "", fmt.Errorf("look up Drydock's GitHub identity: %w", err)
	}
	c.self, c.selfKnown = login, true
	return login, nil
}

func userLogin(ctx context.Context, gc *github.Client) (string, error) {
	u, _, err := gc.Users.Get(ctx, "")
	if err != nil {
		return "", unknownIfRefused(err)
	}
	return u.GetLogin(), nil
}

// unknownIfRefused turns a permanent refusal into "identity unknown": some
// credentials (an installation token asking GET /user) may not read their
// own identity, and that must not stop reporting.
func unknownIfRefused(err error) error {
	if err != nil && Classify(err).Permanent {
		return nil
	}
	return err
}

// errorBodyBuffer reads the body of every non-2xx answer into memory.
// ghinstallation returns a failed token refresh's response without closing
// its body, which would leak the connection; go-github reads error bodies
// in full anyway, so buffering them costs nothing.
type errorBodyBuffer struct{ next http.RoundTripper }

func (t errorBodyBuffer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode/100 == 2 || resp.Body == nil {
		return resp, err
	}
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if rerr != nil {
		return nil, fmt.Errorf("read %d answer of %s %s: %w", resp.StatusCode, req.Method, req.URL.Redacted(), rerr)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}
