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
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/drydock-dev/drydock/workflows"
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
	u, err := url.Parse(cfg.AuthURL)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("auth URL %q: want an origin such as https://auth.previews.example.com", cfg.AuthURL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return nil, fmt.Errorf("auth URL %q: http is allowed only for a loopback or .localhost host (local mode); use https", cfg.AuthURL)
		}
	default:
		return nil, fmt.Errorf("auth URL %q: want https://", cfg.AuthURL)
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
			return nil, fmt.Errorf("%s %q: want an http(s) URL such as %s", name, *p, def)
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
	if hasPort {
		if port == "" || len(port) > 5 {
			return "", false
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return "", false
			}
		}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "", false
		}
	}
	return h, name != ""
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

// CookieNames are the cookies the router sets (the session and the login
// state): a preview's own Set-Cookie may not use them.
func (a *Auth) CookieNames() []string { return []string{a.cookie, a.stateCookie} }

// --- the preview host's side ---

// Check decides a request for a non-public preview at host (its Host
// header) of repo, whose visibility is vis.
func (a *Auth) Check(r *http.Request, repo Repo, vis string) (Verdict, string) {
	c := cookieValue(r.Header, a.cookie)
	if c == "" {
		return NeedLogin, ""
	}
	host := bindHost(r.Host)
	s := a.sessionOf(c, host)
	if s == nil {
		return NeedLogin, ""
	}
	v := a.decide(r.Context(), s, repo, vis)
	if v == NeedLogin {
		a.forget(c)
	}
	return v, s.Login
}

// sessionOf returns the valid session of cookie value c at host, or nil.
func (a *Auth) sessionOf(c, host string) *session {
	now := a.now()
	a.smu.RLock()
	s := a.sessions[c]
	a.smu.RUnlock()
	if s == nil {
		s = &session{}
		// Sealed for its host: another host's cookie does not open here.
		if a.seal.open("session", host, c, s) != nil || s.Host != host || now.Unix() >= s.Exp {
			return nil
		}
		a.smu.Lock()
		if len(a.sessions) >= maxCached {
			a.sweepSessions(now.Unix())
		}
		a.sessions[c] = s
		a.smu.Unlock()
	}
	if s.Host != host || now.Unix() >= s.Exp {
		return nil
	}
	return s
}

// sweepSessions drops expired sessions, and all when none expired. Callers hold smu.
func (a *Auth) sweepSessions(now int64) {
	for k, s := range a.sessions {
		if now >= s.Exp {
			delete(a.sessions, k)
		}
	}
	if len(a.sessions) >= maxCached {
		clear(a.sessions)
	}
}

func (a *Auth) forget(c string) {
	a.smu.Lock()
	delete(a.sessions, c)
	a.smu.Unlock()
}

// decide answers from the cache or asks GitHub (once for concurrent
// requests of one user, repository and visibility).
func (a *Auth) decide(ctx context.Context, s *session, repo Repo, vis string) Verdict {
	k := accessKey{uid: s.UID, owner: repo.Owner, repo: repo.Name, vis: vis}
	now := a.now().UnixNano()
	a.amu.RLock()
	d, ok := a.access[k]
	a.amu.RUnlock()
	if ok && now < d.until {
		return d.verdict
	}
	key := strconv.FormatInt(s.UID, 10) + "/" + repo.String() + "/" + vis
	v, _, _ := a.flights.Do(key, func() (any, error) {
		// Detached from one request: the answer serves every waiter.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), githubTimeout)
		defer cancel()
		v := a.ask(cctx, s.Token, repo, vis)
		if v == Allowed || v == Denied {
			a.remember(k, v)
		}
		a.log.Info("preview access checked with GitHub", "user", s.Login, "repo", repo.String(), "visibility", vis, "verdict", v.String())
		return v, nil
	})
	return v.(Verdict)
}

func (a *Auth) remember(k accessKey, v Verdict) {
	now := a.now().UnixNano()
	a.amu.Lock()
	defer a.amu.Unlock()
	if len(a.access) >= maxCached {
		for k, d := range a.access {
			if now >= d.until {
				delete(a.access, k)
			}
		}
		if len(a.access) >= maxCached {
			clear(a.access)
		}
	}
	a.access[k] = decision{verdict: v, until: now + int64(a.cfg.CacheTTL)}
}

// StripCookie removes the session cookie from a request's headers before
// it is proxied: the preview's app (the pull request's code) never sees it.
func (a *Auth) StripCookie(h http.Header) {
	vals := h["Cookie"]
	for i, v := range vals {
		if !strings.Contains(v, a.cookie) {
			continue
		}
		parts := strings.Split(v, ";")
		kept := parts[:0]
		for _, p := range parts {
			name, _, _ := strings.Cut(strings.TrimSpace(p), "=")
			if name != a.cookie {
				kept = append(kept, strings.TrimSpace(p))
			}
		}
		vals[i] = strings.Join(kept, "; ")
	}
	out := vals[:0]
	for _, v := range vals {
		if v != "" {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		h.Del("Cookie")
	} else {
		h["Cookie"] = out
	}
}

// cookieValue finds a cookie without parsing the others.
func cookieValue(h http.Header, name string) string {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if k, v, ok := strings.Cut(part, "="); ok && k == name {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

// browser reports whether a login redirect helps the client: a navigation
// (GET or HEAD) that accepts HTML.
func browser(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// Refuse answers a request Check did not allow: a login redirect (a
// browser) or 401 (another client) for NeedLogin, 403 for Denied, 503 for
// Unverified.
func (a *Auth) Refuse(w http.ResponseWriter, r *http.Request, v Verdict, login string, repo Repo, vis string) {
	switch v {
	case NeedLogin:
		if !browser(r) {
			writeText(w, http.StatusUnauthorized, "This preview of "+repo.String()+" requires signing in with GitHub: open it in a browser.")
			return
		}
		loc, err := a.loginURL(r.Host, r.URL.RequestURI(), repo, vis)
		if err != nil {
			writeText(w, http.StatusBadRequest, "This request cannot be redirected to the login (bad host or path).")
			return
		}
		noStore(w)
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusFound)
	case Denied:
		a.page(w, r, http.StatusForbidden, "No access to this preview",
			"You are signed in to GitHub as "+login+", who cannot see "+repo.String()+": "+visText(vis)+".",
			"Sign out and in with another GitHub account, or ask for access to the repository.")
	default:
		w.Header().Set("Retry-After", "5")
		a.page(w, r, http.StatusServiceUnavailable, "Cannot check access right now",
			"GitHub did not answer whether you may see "+repo.String()+". Retry shortly.")
	}
}

func visText(vis string) string {
	if vis == workflows.VisibilityOrg {
		return "its previews are open to members of the organization and people with read access to the repository"
	}
	return "its previews are open to people with read access to the repository"
}

// loginURL is the auth host's /login with a sealed return.
func (a *Auth) loginURL(host, path string, repo Repo, vis string) (string, error) {
	h, ok := normalHost(host)
	if hr, isPreview := a.hostRepo(h); !ok || !isPreview || hr != repo || !safePath(path) {
		return "", errSeal
	}
	r, err := a.seal.seal("return", "", returnTo{Host: h, Path: path, Owner: repo.Owner, Repo: repo.Name, Vis: vis, Exp: a.now().Add(returnTTL).Unix()})
	if err != nil {
		return "", err
	}
	return a.scheme + "://" + a.authHost + "/login?r=" + r, nil
}

// ServeSession trades a ticket for the session cookie at SessionPath of a
// preview host, and forgets the session at LogoutPath.
func (a *Auth) ServeSession(w http.ResponseWriter, r *http.Request) {
	host := bindHost(r.Host)
	if r.URL.Path == LogoutPath {
		a.forget(cookieValue(r.Header, a.cookie))
		a.setCookie(w, a.cookie, "", -1)
		a.page(w, r, http.StatusOK, "Signed out", "You are signed out of this preview.")
		return
	}
	if r.Method != http.MethodGet {
		writeText(w, http.StatusMethodNotAllowed, "GET only")
		return
	}
	var t ticket
	now := a.now()
	if a.seal.open("ticket", host, r.URL.Query().Get("ticket"), &t) != nil || t.Host != host || now.Unix() >= t.Exp ||
		!safePath(t.Path) || t.ID == "" {
		a.page(w, r, http.StatusBadRequest, "Sign-in link not valid",
			"This sign-in link is invalid, expired or for another preview. Open the preview's address again to sign in.")
		return
	}
	if !a.useTicket(t.ID, t.Exp, now.Unix()) {
		a.page(w, r, http.StatusBadRequest, "Sign-in link already used",
			"This sign-in link was used already. Open the preview's address again to sign in.")
		return
	}
	s := t.session
	s.Exp = now.Add(a.cfg.SessionTTL).Unix()
	c, err := a.seal.seal("session", host, s)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "cannot create the session")
		return
	}
	a.smu.Lock()
	if len(a.sessions) >= maxCached {
		a.sweepSessions(now.Unix())
	}
	a.sessions[c] = &s
	a.smu.Unlock()
	a.setCookie(w, a.cookie, c, int(a.cfg.SessionTTL/time.Second))
	noStore(w)
	w.Header().Set("Location", t.Path)
	w.WriteHeader(http.StatusFound)
}

// useTicket marks a ticket used; false if it was.
func (a *Auth) useTicket(id string, exp, now int64) bool {
	a.tmu.Lock()
	defer a.tmu.Unlock()
	if _, used := a.tickets[id]; used {
		return false
	}
	if len(a.tickets) > 1000 {
		for k, e := range a.tickets {
			if now >= e {
				delete(a.tickets, k)
			}
		}
	}
	a.tickets[id] = exp
	return true
}

func (a *Auth) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode,
	})
}

func noStore(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
}

// --- the auth host ---

// ServeHTTP serves the auth host: /login, /callback, and / (a short page).
func (a *Auth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/login":
		a.login(w, r)
	case "/callback":
		a.callbackHandler(w, r)
	case "/healthz":
		writeText(w, http.StatusOK, "ok")
	default:
		a.page(w, r, http.StatusNotFound, "Drydock preview login", "This host signs you in to Drydock previews; open a preview's address.")
	}
}

func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	var ret returnTo
	if r.Method != http.MethodGet || a.seal.open("return", "", r.URL.Query().Get("r"), &ret) != nil ||
		a.now().Unix() >= ret.Exp || !a.validReturn(ret) {
		a.page(w, r, http.StatusBadRequest, "Login link not valid",
			"This login link is invalid or expired. Open the preview's address again.")
		return
	}
	ret.Nonce = random(16)
	ret.Exp = a.now().Add(returnTTL).Unix()
	state, err := a.seal.seal("state", "", ret)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "cannot start the login")
		return
	}
	a.setCookie(w, a.stateCookie, ret.Nonce, int(returnTTL/time.Second))
	q := url.Values{
		"client_id": {a.cfg.ClientID}, "redirect_uri": {a.callback}, "scope": {a.cfg.Scopes},
		"state": {state}, "allow_signup": {"false"},
	}
	noStore(w)
	w.Header().Set("Location", a.cfg.GitHubURL+"/login/oauth/authorize?"+q.Encode())
	w.WriteHeader(http.StatusFound)
}

// validReturn: the return host is a preview host of the return's repository.
func (a *Auth) validReturn(ret returnTo) bool {
	repo, ok := a.hostRepo(ret.Host)
	return ok && repo.Owner == ret.Owner && repo.Name == ret.Repo && safePath(ret.Path)
}

func (a *Auth) callbackHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var st returnTo
	if r.Method != http.MethodGet || a.seal.open("state", "", q.Get("state"), &st) != nil || a.now().Unix() >= st.Exp ||
		!a.validReturn(st) {
		a.page(w, r, http.StatusBadRequest, "Login not valid", "The login state is invalid or expired. Open the preview's address again.")
		return
	}
	nonce := cookieValue(r.Header, a.stateCookie)
	if nonce == "" || subtle.ConstantTimeCompare([]byte(nonce), []byte(st.Nonce)) != 1 {
		a.page(w, r, http.StatusBadRequest, "Login not valid",
			"This login was not started in this browser (or another login replaced it). Open the preview's address again.")
		return
	}
	a.setCookie(w, a.stateCookie, "", -1)
	retry := a.scheme + "://" + st.Host + st.Path
	if e := q.Get("error"); e != "" || q.Get("code") == "" {
		a.page(w, r, http.StatusForbidden, "Login cancelled", "GitHub did not sign you in. Open the preview's address again to retry.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*githubTimeout)
	defer cancel()
	token, err := a.exchange(ctx, q.Get("code"))
	if err != nil {
		a.log.Warn("preview login: code exchange failed", "err", err)
		a.page(w, r, http.StatusBadGateway, "Login failed", "GitHub did not complete the login. Retry: "+retry)
		return
	}
	uid, login, err := a.user(ctx, token)
	if err != nil {
		a.log.Warn("preview login: GET /user failed", "err", err)
		a.page(w, r, http.StatusBadGateway, "Login failed", "GitHub did not name the signed-in user. Retry: "+retry)
		return
	}
	repo := Repo{Owner: st.Owner, Name: st.Repo}
	s := &session{Host: bindHost(st.Host), UID: uid, Login: login, Token: token}
	switch v := a.decide(ctx, s, repo, st.Vis); v {
	case Allowed:
	case Denied:
		a.log.Info("preview login refused: no access", "user", login, "repo", repo.String(), "visibility", st.Vis)
		a.Refuse(w, r, v, login, repo, st.Vis)
		return
	default:
		a.Refuse(w, r, Unverified, login, repo, st.Vis)
		return
	}
	tk := ticket{session: *s, Path: st.Path, ID: random(16)}
	tk.Exp = a.now().Add(ticketTTL).Unix()
	t, err := a.seal.seal("ticket", s.Host, tk)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "cannot finish the login")
		return
	}
	a.log.Info("preview login", "user", login, "repo", repo.String(), "host", st.Host)
	noStore(w)
	w.Header().Set("Location", a.scheme+"://"+st.Host+SessionPath+"?ticket="+t)
	w.WriteHeader(http.StatusFound)
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// --- GitHub ---

// exchange trades the code for the user's token.
func (a *Auth) exchange(ctx context.Context, code string) (string, error) {
	form := url.Values{"client_id": {a.cfg.ClientID}, "client_secret": {a.cfg.ClientSecret}, "code": {code}, "redirect_uri": {a.callback}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.GitHubURL+"/login/oauth/access_token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("access_token: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&out); err != nil {
		return "", fmt.Errorf("access_token: %w", err)
	}
	if out.Error != "" || out.AccessToken == "" {
		return "", fmt.Errorf("access_token: %q", out.Error) // GitHub's error code, never a secret
	}
	return out.AccessToken, nil
}

// api sends GET path with the user's token and decodes a 200's body into v.
func (a *Auth) api(ctx context.Context, token, path string, v any) (int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.APIURL+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(v); err != nil {
			return 0, nil, fmt.Errorf("GET %s: %w", path, err)
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, resp.Header, nil
}

func (a *Auth) user(ctx context.Context, token string) (int64, string, error) {
	var u struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
	}
	code, _, err := a.api(ctx, token, "/user", &u)
	if err != nil {
		return 0, "", err
	}
	if code != http.StatusOK || u.ID == 0 || u.Login == "" {
		return 0, "", fmt.Errorf("GET /user: HTTP %d", code)
	}
	return u.ID, u.Login, nil
}

// ask asks GitHub whether the token's user may see repo's previews:
//
//   - private (and "" and any unknown value): GET /repos/{owner}/{repo}
//     answers 200 with permissions.pull (GitHub answers 404 without read
//     access);
//   - org: an active membership of the owner organization
//     (GET /user/memberships/orgs/{owner}), or else read access as above.
//
// 401 is a token GitHub no longer accepts (NeedLogin); a rate limit, a 5xx,
// a timeout or an unreadable answer is Unverified: never access.
func (a *Auth) ask(ctx context.Context, token string, repo Repo, vis string) Verdict {
	if vis == workflows.VisibilityOrg {
		var m struct {
			State string `json:"state"`
		}
		code, h, err := a.api(ctx, token, "/user/memberships/orgs/"+url.PathEscape(repo.Owner), &m)
		switch {
		case err != nil:
			a.log.Warn("preview access: GitHub error", "err", err)
			return Unverified
		case code == http.StatusOK && m.State == "active":
			return Allowed
		case code == http.StatusUnauthorized:
			return NeedLogin
		case rateLimited(code, h) || code >= 500:
			return Unverified
		}
		// Not a member (404), or a token that may not read memberships
		// (403): read access to the repository still counts.
	}
	var rp struct {
		Permissions struct {
			Pull bool `json:"pull"`
		} `json:"permissions"`
	}
	code, h, err := a.api(ctx, token, "/repos/"+url.PathEscape(repo.Owner)+"/"+url.PathEscape(repo.Name), &rp)
	switch {
	case err != nil:
		a.log.Warn("preview access: GitHub error", "err", err)
		return Unverified
	case code == http.StatusOK && rp.Permissions.Pull:
		return Allowed
	case code == http.StatusOK, code == http.StatusNotFound:
		return Denied
	case code == http.StatusUnauthorized:
		return NeedLogin
	case code == http.StatusForbidden && !rateLimited(code, h):
		return Denied // e.g. a GitHub App not installed on the repository
	}
	return Unverified
}

func rateLimited(code int, h http.Header) bool {
	return (code == http.StatusForbidden || code == http.StatusTooManyRequests) &&
		(h.Get("X-RateLimit-Remaining") == "0" || h.Get("Retry-After") != "")
}

// --- pages ---

func writeText(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	noStore(w)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}
