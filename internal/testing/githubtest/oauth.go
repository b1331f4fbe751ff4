package githubtest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The double is also GitHub's web login for OAuth Apps and GitHub Apps
// (user authorization): /login/oauth/authorize shows a page on which a
// browser signs in as one of the double's users and authorizes the app, and
// /login/oauth/access_token exchanges the code for a user token. A user
// token answers GET /user, GET /repos/{owner}/{repo} (404 without read
// access, as GitHub does) and the org membership endpoints according to the
// collaborators and org members the test declared; the tokens of AddToken
// keep acting on every repository.
//
// Tests declare users, collaborators and org members with AddUser,
// AddCollaborator and AddOrgMember, or over HTTP with the /_test/ control
// routes below (for a double in another process).
const (
	RouteOAuthAuthorize       = "GET /login/oauth/authorize"
	RouteOAuthAuthorizeSubmit = "POST /login/oauth/authorize"
	RouteOAuthAccessToken     = "POST /login/oauth/access_token"
	RouteGetRepo              = "GET /repos/{owner}/{repo}"
	RouteGetOrgMembership     = "GET /user/memberships/orgs/{org}"
	RouteCheckOrgMember       = "GET /orgs/{org}/members/{username}"

	// ControlAddUser: body {"login": "..."}; 201 {"login", "id"}.
	ControlAddUser = "POST /_test/users"
	// ControlAddCollaborator: body {"permission": "read"|"triage"|"write"|"maintain"|"admin"}
	// (default read); 204. Creates the repository and the user if needed.
	ControlAddCollaborator = "PUT /_test/repos/{owner}/{repo}/collaborators/{login}"
	// ControlAddOrgMember: no body; 204. The membership is active.
	ControlAddOrgMember = "PUT /_test/orgs/{org}/members/{login}"
	// ControlAddOAuthApp: body {"client_id", "client_secret", "callback_url"}; 204.
	ControlAddOAuthApp = "POST /_test/oauth/apps"
)

// oauthCodeTTL is how long an authorization code may be exchanged (GitHub: ten minutes).
const oauthCodeTTL = 10 * time.Minute

type oauthApp struct {
	clientID, secret, callback string
}

type oauthCode struct {
	clientID, redirectURI string
	user                  User
	expires               time.Time
}

// AddUser creates the account login (the same account on every call) and returns it.
func (s *Server) AddUser(login string) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userNamed(login)
}

// AddCollaborator gives login permission ("read", "triage", "write",
// "maintain" or "admin"; "" is read) on owner/repo, creating both if needed.
func (s *Server) AddCollaborator(owner, repo, login, permission string) {
	if permission == "" {
		permission = "read"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userNamed(login)
	r := s.repo(owner, repo)
	if r.collaborators == nil {
		r.collaborators = map[string]string{}
	}
	r.collaborators[strings.ToLower(login)] = permission
}

// SetRepoPublic makes owner/repo public (every user may read it) or
// private (the default: its owner and collaborators only).
func (s *Server) SetRepoPublic(owner, repo string, public bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repo(owner, repo).public = public
}

// AddOrgMember makes login an active member of org.
func (s *Server) AddOrgMember(org, login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userNamed(login)
	if s.orgMembers == nil {
		s.orgMembers = map[string]map[string]bool{}
	}
	o := strings.ToLower(org)
	if s.orgMembers[o] == nil {
		s.orgMembers[o] = map[string]bool{}
	}
	s.orgMembers[o][strings.ToLower(login)] = true
}

// AddOAuthApp registers an OAuth App (or a GitHub App's user authorization)
// with its client credentials and callback URL: redirect_uri must start with it.
func (s *Server) AddOAuthApp(clientID, clientSecret, callbackURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.oauthApps == nil {
		s.oauthApps = map[string]*oauthApp{}
	}
	s.oauthApps[clientID] = &oauthApp{clientID: clientID, secret: clientSecret, callback: callbackURL}
}

// WebURL is the github.com-style web origin (OAuth endpoints live at
// /login/oauth/...), with a trailing slash.
func (s *Server) WebURL() string { return s.srv.URL + "/" }

// OAuthTokens is how many user tokens the OAuth endpoints have issued.
func (s *Server) OAuthTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oauthIssued
}

// readPermission says whether the user may read owner/repo. Callers hold s.mu.
func (r *repoState) permissions(login string) (pull, push, admin bool) {
	l := strings.ToLower(login)
	if strings.EqualFold(r.owner, login) {
		return true, true, true
	}
	switch r.collaborators[l] {
	case "admin":
		return true, true, true
	case "write", "maintain":
		return true, true, false
	case "read", "triage":
		return true, false, false
	}
	return r.public, false, false
}

var authorizePage = template.Must(template.New("authorize").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize {{.ClientID}} · GitHub double</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32em;margin:4em auto;padding:0 1em}
form{border:1px solid #d0d7de;border-radius:6px;padding:1.5em}input[type=text]{width:100%;font-size:1em;padding:.3em}
button{margin-top:1em;background:#1f883d;color:#fff;border:0;border-radius:6px;padding:.5em 1em;font-size:1em}</style>
</head><body>
<h1>Sign in to GitHub (test double)</h1>
<p>to continue to <strong>{{.ClientID}}</strong>, which asks for: <code>{{if .Scope}}{{.Scope}}{{else}}(no scope){{end}}</code></p>
{{if .Error}}<p id="error" style="color:#b00">{{.Error}}</p>{{end}}
<form method="post" action="/login/oauth/authorize">
<label for="login">Username</label>
<input type="text" id="login" name="login" autocomplete="username" value="{{.Login}}" autofocus>
<input type="hidden" name="client_id" value="{{.ClientID}}">
<input type="hidden" name="redirect_uri" value="{{.RedirectURI}}">
<input type="hidden" name="scope" value="{{.Scope}}">
<input type="hidden" name="state" value="{{.State}}">
<button type="submit" id="authorize">Authorize</button>
</form>
</body></html>
`))

type authorizeData struct {
	ClientID, RedirectURI, Scope, State, Login, Error string
}

// checkClient validates client_id and redirect_uri. Callers hold s.mu.
func (s *Server) checkClient(clientID, redirectURI string) (*oauthApp, string) {
	a := s.oauthApps[clientID]
	if a == nil {
		return nil, "unknown client_id"
	}
	if redirectURI != "" && !strings.HasPrefix(redirectURI, a.callback) {
		return nil, "The redirect_uri MUST match the registered callback URL for this application."
	}
	return a, ""
}

func writePage(w http.ResponseWriter, status int, d authorizeData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = authorizePage.Execute(w, d)
}

// oauthAuthorize shows the sign-in and consent page.
func (s *Server) oauthAuthorize(c *call) {
	q := c.r.URL.Query()
	d := authorizeData{ClientID: q.Get("client_id"), RedirectURI: q.Get("redirect_uri"), Scope: q.Get("scope"), State: q.Get("state")}
	s.mu.Lock()
	_, msg := s.checkClient(d.ClientID, d.RedirectURI)
	s.mu.Unlock()
	if msg != "" {
		c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		c.w.WriteHeader(http.StatusNotFound)
		_, _ = c.w.Write([]byte(msg + "\n"))
		return
	}
	writePage(c.w, http.StatusOK, d)
}

// oauthAuthorizeSubmit signs the user in, authorizes the app and redirects
// to redirect_uri with a single-use code and the state.
func (s *Server) oauthAuthorizeSubmit(c *call) {
	if err := c.r.ParseForm(); err != nil {
		writeError(c.w, http.StatusBadRequest, "bad form")
		return
	}
	f := c.r.PostForm
	d := authorizeData{ClientID: f.Get("client_id"), RedirectURI: f.Get("redirect_uri"), Scope: f.Get("scope"), State: f.Get("state"), Login: f.Get("login")}
	s.mu.Lock()
	a, msg := s.checkClient(d.ClientID, d.RedirectURI)
	var user User
	known := false
	if msg == "" {
		user, known = s.users[strings.ToLower(d.Login)]
	}
	var code string
	if msg == "" && known {
		code = oauthRandom("")
		if s.oauthCodes == nil {
			s.oauthCodes = map[string]*oauthCode{}
		}
		redirect := d.RedirectURI
		if redirect == "" {
			redirect = a.callback
		}
		s.oauthCodes[code] = &oauthCode{clientID: a.clientID, redirectURI: d.RedirectURI, user: user, expires: time.Now().Add(oauthCodeTTL)}
		d.RedirectURI = redirect
	}
	s.mu.Unlock()
	switch {
	case msg != "":
		c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		c.w.WriteHeader(http.StatusNotFound)
		_, _ = c.w.Write([]byte(msg + "\n"))
		return
	case !known:
		d.Error = "Incorrect username."
		writePage(c.w, http.StatusUnauthorized, d)
		return
	}
	u, err := url.Parse(d.RedirectURI)
	if err != nil {
		writeError(c.w, http.StatusBadRequest, "bad redirect_uri")
		return
	}
	q := u.Query()
	q.Set("code", code)
	if d.State != "" {
		q.Set("state", d.State)
	}
	u.RawQuery = q.Encode()
	http.Redirect(c.w, c.r, u.String(), http.StatusFound)
}

// oauthAccessToken exchanges a code for a user token. Like GitHub, it
// answers errors with 200 and an "error" field, in JSON when the client
// accepts it and form-encoded otherwise.
func (s *Server) oauthAccessToken(c *call) {
	in, ok := readTokenRequest(c)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	answerOAuth(c, s.exchangeCode(in))
}

// tokenRequest is the body of an access-token request.
type tokenRequest struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
}

// readTokenRequest reads an access-token request, JSON or form-encoded;
// false after answering 400.
func readTokenRequest(c *call) (in tokenRequest, ok bool) {
	if strings.HasPrefix(c.r.Header.Get("Content-Type"), "application/json") {
		return in, decodeBody(c, &in)
	}
	if err := c.r.ParseForm(); err != nil {
		writeError(c.w, http.StatusBadRequest, "bad form")
		return in, false
	}
	in.ClientID, in.ClientSecret = c.r.PostForm.Get("client_id"), c.r.PostForm.Get("client_secret")
	in.Code, in.RedirectURI = c.r.PostForm.Get("code"), c.r.PostForm.Get("redirect_uri")
	return in, true
}

// answerOAuth answers an access-token request with v (200), in JSON when
// the client accepts it and form-encoded otherwise.
func answerOAuth(c *call, v map[string]string) {
	if strings.Contains(c.r.Header.Get("Accept"), "json") {
		writeJSON(c.w, http.StatusOK, v)
		return
	}
	form := url.Values{}
	for k, x := range v {
		form.Set(k, x)
	}
	c.w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write([]byte(form.Encode()))
}

// exchangeCode checks the client's credentials and its code (used up
// either way) and issues a user token: it returns the answer, a token or
// an error. Callers hold s.mu.
func (s *Server) exchangeCode(in tokenRequest) map[string]string {
	a := s.oauthApps[in.ClientID]
	if a == nil || subtle.ConstantTimeCompare([]byte(a.secret), []byte(in.ClientSecret)) != 1 {
		return map[string]string{"error": "incorrect_client_credentials", "error_description": "The client_id and/or client_secret passed are incorrect."}
	}
	code := s.oauthCodes[in.Code]
	if code != nil {
		delete(s.oauthCodes, in.Code) // single use, whatever happens next
	}
	if code == nil || code.clientID != in.ClientID || !time.Now().Before(code.expires) {
		return map[string]string{"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."}
	}
	if code.redirectURI != "" && in.RedirectURI != code.redirectURI {
		return map[string]string{"error": "redirect_uri_mismatch", "error_description": "The redirect_uri MUST match the registered callback URL for this application."}
	}
	token := oauthRandom("gho_")
	s.tokens[token] = &principal{kind: "user", user: code.user, scoped: true}
	s.oauthIssued++
	return map[string]string{"access_token": token, "token_type": "bearer", "scope": "repo,read:org"}
}

func oauthRandom(prefix string) string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// repoJSON is the repository object of GET /repos/{owner}/{repo}.
type repoJSON struct {
	ID            int64            `json:"id"`
	Name          string           `json:"name"`
	FullName      string           `json:"full_name"`
	Private       bool             `json:"private"`
	Visibility    string           `json:"visibility"`
	Owner         map[string]any   `json:"owner"`
	DefaultBranch string           `json:"default_branch"`
	URL           string           `json:"url"`
	HTMLURL       string           `json:"html_url"`
	Permissions   *map[string]bool `json:"permissions,omitempty"`
}

// getRepo answers the repository with the caller's permissions; a user
// token without read access gets 404, as GitHub answers.
func (s *Server) getRepo(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[repoKey(c.r.PathValue("owner"), c.r.PathValue("repo"))]
	if r == nil {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return
	}
	out := repoJSON{
		ID: r.id, Name: r.name, FullName: r.owner + "/" + r.name, Private: !r.public, Visibility: "private",
		Owner: map[string]any{"login": r.owner}, DefaultBranch: r.defaultBranch, URL: r.apiURL(c), HTMLURL: r.htmlURL(c),
	}
	if r.public {
		out.Visibility = "public"
	}
	switch {
	case c.who.kind == "user" && c.who.scoped:
		pull, push, admin := r.permissions(c.who.user.Login)
		if !pull {
			writeError(c.w, http.StatusNotFound, "Not Found")
			return
		}
		out.Permissions = &map[string]bool{"admin": admin, "maintain": admin, "push": push, "triage": pull, "pull": pull}
	case c.who.kind == "user":
		out.Permissions = &map[string]bool{"admin": true, "maintain": true, "push": true, "triage": true, "pull": true}
	}
	writeJSON(c.w, http.StatusOK, out)
}

func (s *Server) isOrgMember(org, login string) bool {
	return s.orgMembers[strings.ToLower(org)][strings.ToLower(login)]
}

// getOrgMembership is GET /user/memberships/orgs/{org}: 200 with state
// "active" for a member, 404 otherwise.
func (s *Server) getOrgMembership(c *call) {
	org := c.r.PathValue("org")
	if c.who.kind != "user" {
		writeError(c.w, http.StatusForbidden, "Resource not accessible by integration")
		return
	}
	s.mu.Lock()
	member := s.isOrgMember(org, c.who.user.Login)
	s.mu.Unlock()
	if !member {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(c.w, http.StatusOK, map[string]any{
		"state": "active", "role": "member", "organization": map[string]any{"login": org}, "user": c.who.user,
	})
}

// checkOrgMember is GET /orgs/{org}/members/{username}: 204 for a member, 404 otherwise.
func (s *Server) checkOrgMember(c *call) {
	s.mu.Lock()
	member := s.isOrgMember(c.r.PathValue("org"), c.r.PathValue("username"))
	s.mu.Unlock()
	if !member {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return
	}
	c.w.WriteHeader(http.StatusNoContent)
}

func (s *Server) controlAddUser(c *call) {
	var in struct {
		Login string `json:"login"`
	}
	if !decodeBody(c, &in) {
		return
	}
	if in.Login == "" {
		writeValidation(c.w, "Validation Failed", "User", "login", "missing_field")
		return
	}
	u := s.AddUser(in.Login)
	writeJSON(c.w, http.StatusCreated, map[string]any{"login": u.Login, "id": u.ID})
}

func (s *Server) controlAddCollaborator(c *call) {
	var in struct {
		Permission string `json:"permission"`
	}
	if c.r.ContentLength != 0 && !decodeBody(c, &in) {
		return
	}
	switch in.Permission {
	case "", "read", "triage", "write", "maintain", "admin":
	default:
		writeValidation(c.w, "Validation Failed", "Collaborator", "permission", "invalid")
		return
	}
	s.AddCollaborator(c.r.PathValue("owner"), c.r.PathValue("repo"), c.r.PathValue("login"), in.Permission)
	c.w.WriteHeader(http.StatusNoContent)
}

func (s *Server) controlAddOrgMember(c *call) {
	s.AddOrgMember(c.r.PathValue("org"), c.r.PathValue("login"))
	c.w.WriteHeader(http.StatusNoContent)
}

func (s *Server) controlAddOAuthApp(c *call) {
	var in struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		CallbackURL  string `json:"callback_url"`
	}
	if !decodeBody(c, &in) {
		return
	}
	if in.ClientID == "" || in.ClientSecret == "" || in.CallbackURL == "" {
		writeValidation(c.w, "Validation Failed", "OAuthApp", "client_id", "missing_field")
		return
	}
	s.AddOAuthApp(in.ClientID, in.ClientSecret, in.CallbackURL)
	c.w.WriteHeader(http.StatusNoContent)
}
