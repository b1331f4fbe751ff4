// Package previewauth is the preview router's login: GitHub OAuth (an OAuth
// App, or a GitHub App's user authorization: the same endpoints) on one auth
// host, and a session cookie per preview host.
//
// The flow, for a browser that opens a non-public preview without a session:
//
//  1. The preview host answers 302 to https://<auth host>/login?r=<return>,
//     where <return> is sealed (AES-GCM, ten minutes): the preview host, the
//     path, the repository and the preview's visibility. Nobody can make
//     the auth host send a browser anywhere else.
//  2. /login sets a CSRF nonce in a host-only cookie on the auth host and
//     redirects to GitHub's /login/oauth/authorize with a sealed state that
//     carries the return and the nonce.
//  3. GitHub redirects to /callback: the state must open, be fresh and carry
//     the nonce of the browser's cookie. The code is exchanged for the
//     user's token, GET /user names the user, and GitHub is asked whether
//     the user may see the repository (see Verdict). Without access: 403,
//     no ticket.
//  4. /callback redirects to the preview host's reserved path SessionPath
//     with a ticket: sealed for that host only, valid one minute, used once.
//  5. The preview host trades the ticket for the session cookie (sealed for
//     that host: HttpOnly, Secure outside local mode, SameSite=Lax, no
//     Domain) and redirects to the path the user asked for.
//
// The user's token lives only inside the encrypted cookie (and the router's
// memory). Access decisions are cached per user, repository and visibility
// for CacheTTL; a verified cookie is cached too, so a warm request costs two
// map lookups, no cryptography and no GitHub call.
package previewauth

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Paths of the flow.
const (
	// SessionPath is reserved on every preview host while login is on: it
	// trades a ticket for the session cookie.
	SessionPath = "/.drydock/session"
	// LogoutPath is reserved on every preview host while login is on: it
	// forgets the preview host's session.
	LogoutPath = "/.drydock/logout"
)

// Defaults of Config.
const (
	DefaultSessionTTL = 8 * time.Hour
	DefaultCacheTTL   = 5 * time.Minute
	DefaultScopes     = "repo read:org"
	DefaultGitHubURL  = "https://github.com/"
	DefaultAPIURL     = "https://api.github.com/"
)

const (
	returnTTL     = 10 * time.Minute // the login redirect and the OAuth state
	ticketTTL     = time.Minute
	githubTimeout = 10 * time.Second
	maxBody       = 1 << 20
	maxCached     = 100_000 // sessions, and access decisions
	maxPath       = 2048
)

// Repo is the repository of a preview host. Owner and Name are lower case.
type Repo struct{ Owner, Name string }

func (r Repo) String() string { return r.Owner + "/" + r.Name }

// Config configures Auth.
type Config struct {
	// AuthURL is the auth host's origin, e.g. https://auth.previews.example.com
	// (http only for a loopback or *.localhost host: local mode). The OAuth
	// callback URL is AuthURL + "/callback".
	AuthURL string
	// ClientID and ClientSecret are the OAuth App's, or the GitHub App's
	// (its user authorization).
	ClientID, ClientSecret string
	// SessionKeys: the first seals, every one opens (rotation). Each at
	// least MinKeyLen bytes.
	SessionKeys []string
	// GitHubURL is GitHub's web origin (OAuth endpoints); APIURL its REST API.
	GitHubURL, APIURL string
	// Scopes an OAuth App asks for (a GitHub App ignores them).
	Scopes string
	// SessionTTL is a session cookie's lifetime; CacheTTL how long an
	// access decision is reused.
	SessionTTL, CacheTTL time.Duration
	// PreviewHost says which repository a preview host (without port)
	// names; the login returns only to such hosts. Required.
	PreviewHost func(host string) (Repo, bool)
	// HTTPClient talks to GitHub (nil: one with a 10s timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Verdict is what Check decides.
type Verdict int

const (
	// Allowed: a valid session whose user may see the repository.
	Allowed Verdict = iota
	// NeedLogin: no session, an invalid, expired or another host's one, or
	// a token GitHub no longer accepts.
	NeedLogin
	// Denied: the user may not see the repository (as GitHub says).
	Denied
	// Unverified: GitHub could not be asked (error, timeout, rate limit).
	Unverified
)

func (v Verdict) String() string {
	return [...]string{"allowed", "need_login", "denied", "unverified"}[v]
}

// Auth is the login of one router. Safe for concurrent use.
type Auth struct {
	cfg         Config
	seal        *sealer
	scheme      string // of the auth host, and of the preview hosts
	authHost    string // host[:port], lower case
	authPort    string // the auth URL's port ("" = the scheme's): the only port a preview host may carry
	callback    string
	secure      bool
	cookie      string // session cookie name
	stateCookie string // CSRF nonce cookie name (auth host)
	client      *http.Client
	log         *slog.Logger
	now         func() time.Time

	smu      sync.RWMutex
	sessions map[string]*session // cookie value → its verified session

	amu    sync.RWMutex
	access map[accessKey]decision

	flights singleflight.Group

	tmu     sync.Mutex
	tickets map[string]int64 // used ticket IDs → expiry (unix)
}

// session is a session cookie's content.
type session struct {
	Host  string `json:"h"`
	UID   int64  `json:"u"`
	Login string `json:"l"`
	Token string `json:"t"`
	Exp   int64  `json:"e"`
}

type ticket struct {
	session
	Path string `json:"p"`
	ID   string `json:"j"`
}

// returnTo is where a login goes back to: the sealed "r" of /login and,
// with the nonce, the OAuth state.
type returnTo struct {
	Host  string `json:"h"`
	Path  string `json:"p"`
	Owner string `json:"o"`
	Repo  string `json:"n"`
	Vis   string `json:"v"`
	Exp   int64  `json:"e"`
	Nonce string `json:"c,omitempty"`
}

type accessKey struct {
	uid              int64
	owner, repo, vis string
}

type decision struct {
	verdict Verdict
	until   int64 // unix nanoseconds
}

// New validates cfg.
func New(cfg Config) (*Auth, error) {
	u, err := parseAuthURL(cfg.AuthURL)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("the GitHub client ID and client secret are required")
	}
	if cfg.PreviewHost == nil {
		return nil, errors.New("previewauth: PreviewHost is required")
	}
	authHost := strings.ToLower(u.Host)
	if _, ok := cfg.PreviewHost(u.Hostname()); ok {
		return nil, fmt.Errorf("auth URL %q names a preview host; use a host of its own such as auth.<preview domain>", cfg.AuthURL)
	}
	s, err := newSealer(cfg.SessionKeys)
	if err != nil {
		return nil, err
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	a := &Auth{
		cfg: cfg, seal: s, scheme: u.Scheme, authHost: authHost, authPort: u.Port(), secure: u.Scheme == "https",
		callback: u.Scheme + "://" + u.Host + "/callback",
		client:   cfg.HTTPClient, log: cfg.Logger, now: time.Now,
		sessions: map[string]*session{}, access: map[accessKey]decision{}, tickets: map[string]int64{},
	}
	a.cookie, a.stateCookie = "drydock_session", "drydock_login"
	if a.secure {
		// __Host-: the browser keeps it only if Secure, Path=/ and without
		// Domain, so no other host can plant or scope one.
		a.cookie, a.stateCookie = "__Host-"+a.cookie, "__Host-"+a.stateCookie
	}
	if a.client == nil {
		a.client = &http.Client{Timeout: githubTimeout}
	}
	if a.log == nil {
		a.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return a, nil
}

// parseAuthURL parses the auth URL: an https origin, or an http one on a
// loopback or .localhost host.
func parseAuthURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("auth URL %q: want an origin such as https://auth.previews.example.com", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return nil, fmt.Errorf("auth URL %q: http is allowed only for a loopback or .localhost host (local mode); use https", raw)
		}
	default:
		return nil, fmt.Errorf("auth URL %q: want https://", raw)
	}
	return u, nil
}

// defaults fills the GitHub URLs (checked), scopes and TTLs left empty.
func (cfg *Config) defaults() error {
	for name, p := range map[string]*string{"GitHub URL": &cfg.GitHubURL, "GitHub API URL": &cfg.APIURL} {
		def := DefaultGitHubURL
		if name == "GitHub API URL" {
			def = DefaultAPIURL
		}
		if *p == "" {
			*p = def
		}
		pu, err := url.Parse(*p)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			return fmt.Errorf("%s %q: want an http(s) URL such as %s", name, *p, def)
		}
		*p = strings.TrimSuffix(*p, "/")
	}
	if cfg.Scopes == "" {
		cfg.Scopes = DefaultScopes
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	return nil
}

// AuthHost is the auth host (host[:port], lower case).
func (a *Auth) AuthHost() string { return a.authHost }

// CallbackURL is the OAuth callback URL to register with GitHub.
func (a *Auth) CallbackURL() string { return a.callback }

// CookieName is the session cookie's name.
func (a *Auth) CookieName() string { return a.cookie }

// IsAuthHost reports whether a Host header names the auth host.
func (a *Auth) IsAuthHost(host string) bool {
	return strings.EqualFold(strings.TrimSuffix(host, "."), a.authHost)
}

func loopback(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// normalHost lower-cases a Host header and accepts only name[:port], so
// that it can be written into a URL unescaped.
func normalHost(h string) (string, bool) {
	h = strings.ToLower(h)
	if h == "" || len(h) > 260 {
		return "", false
	}
	name, port, hasPort := strings.Cut(h, ":")
	if hasPort && !validPort(port) {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "", false
		}
	}
	return h, name != ""
}

// validPort: one to five digits.
func validPort(port string) bool {
	if port == "" || len(port) > 5 {
		return false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}

// bindHost is the host name a ticket and a session are bound to: lower
// case, without port or trailing dot (browsers do not keep cookies apart by
// port, so binding the port would add nothing).
func bindHost(h string) string {
	h = strings.ToLower(h)
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

// safePath accepts a local path with its query: it starts with one "/"
// (not "//" nor "/\", which browsers take for another host) and holds no
// control characters.
func safePath(p string) bool {
	if p == "" || p[0] != '/' || len(p) > maxPath {
		return false
	}
	if len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return false
		}
	}
	return true
}

// hostRepo checks that host is a preview host (of repo, when given).
func (a *Auth) hostRepo(host string) (Repo, bool) {
	h, ok := normalHost(host)
	if !ok {
		return Repo{}, false
	}
	name, port, _ := strings.Cut(h, ":")
	if port != "" && port != a.authPort {
		// Previews are served where the auth host is: a ticket is never
		// sent to another port of a preview's name (something else may
		// listen there on a shared address).
		return Repo{}, false
	}
	return a.cfg.PreviewHost(name)
}
