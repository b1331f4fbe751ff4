package githubtest

import (
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
)

// Routes through which a GitHub App (its JWT) finds its installations.
const (
	RouteGetInstallation     = "GET /app/installations/{installation_id}"
	RouteGetOrgInstallation  = "GET /orgs/{org}/installation"
	RouteGetUserInstallation = "GET /users/{username}/installation"
	RouteGetAppHookConfig    = "GET /app/hook/config"
)

// SetAppEvents replaces the events App appID subscribes to (default
// pull_request and workflow_job), as GET /app lists them.
func (s *Server) SetAppEvents(appID int64, events ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appNamed(appID, "SetAppEvents").Events = append([]string{}, events...)
}

// SetAppWebhook sets the URL App appID delivers its webhooks to, as
// GET /app/hook/config shows it (default: none, answered 404).
func (s *Server) SetAppWebhook(appID int64, url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appNamed(appID, "SetAppWebhook").hookURL = url
}

// appNamed returns App appID or panics naming the caller. Callers hold s.mu.
func (s *Server) appNamed(appID int64, caller string) *app {
	a := s.apps[appID]
	if a == nil {
		panic(fmt.Sprintf("githubtest: %s: no App %d (AddApp first)", caller, appID))
	}
	return a
}

func (s *Server) getAppHookConfig(c *call) {
	s.mu.Lock()
	u := c.app.hookURL
	s.mu.Unlock()
	if u == "" {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return
	}
	// GitHub masks the secret.
	writeJSON(c.w, http.StatusOK, map[string]any{"url": u, "content_type": "json", "secret": "********", "insecure_ssl": "0"})
}

// SetInstallationAccount makes installation id (AddInstallation) belong to
// the account login, an organization or a user (default: none, so the
// owner lookups do not find it).
func (s *Server) SetInstallationAccount(id int64, login, accountType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.installations[id]
	if in == nil {
		panic(fmt.Sprintf("githubtest: SetInstallationAccount: no installation %d", id))
	}
	acct := s.users[strings.ToLower(login)]
	if acct.Login == "" {
		acct = s.newUser(login, accountType)
		s.users[strings.ToLower(login)] = acct
	}
	in.account = &acct
}

// SetInstallationPermissions replaces the permissions installation id was
// granted (default: the ones Drydock asks for), as an owner who has not
// accepted an App's new permissions has: GitHub reports them in the
// installation and in the tokens minted for it (the double reports them,
// it does not refuse calls they do not cover).
func (s *Server) SetInstallationPermissions(id int64, perms map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.installations[id]
	if in == nil {
		panic(fmt.Sprintf("githubtest: SetInstallationPermissions: no installation %d", id))
	}
	in.permissions = maps.Clone(perms)
}

// SetTokenScopes makes token (AddToken) a classic personal access token
// with these OAuth scopes: GitHub lists them in the X-OAuth-Scopes header
// of every answer to it. Tokens without scopes are fine-grained ones, whose
// answers carry no such header.
func (s *Server) SetTokenScopes(token string, scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.tokens[token]
	if p == nil {
		panic("githubtest: SetTokenScopes: unknown token (AddToken first)")
	}
	p.scopes = append([]string{}, scopes...)
}

// perms is the installation's permissions (the App's by default).
func (in *installation) perms() map[string]string {
	if in.permissions != nil {
		return in.permissions
	}
	return appPermissions
}

// installationJSON is an installation as GET /app/installations/{id} shows it.
func (s *Server) installationJSON(c *call, in *installation) map[string]any {
	out := map[string]any{
		"id": in.id, "app_id": in.app.ID, "app_slug": in.app.Slug,
		"permissions": in.perms(), "events": in.app.Events, "repository_selection": "all",
		"access_tokens_url": fmt.Sprintf("%s/app/installations/%d/access_tokens", c.apiBase, in.id),
		"html_url":          fmt.Sprintf("%s/settings/installations/%d", c.origin, in.id),
	}
	if in.account != nil {
		out["account"] = *in.account
		out["target_type"] = in.account.Type
		out["target_id"] = in.account.ID
	}
	return out
}

// installationFor finds the installation the request names, when it is
// the calling App's, or answers 404. Callers hold s.mu.
func (s *Server) installationFor(c *call) *installation {
	id, err := strconv.ParseInt(c.r.PathValue("installation_id"), 10, 64)
	in := s.installations[id]
	if err != nil || in == nil || in.app != c.app {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return nil
	}
	return in
}

func (s *Server) getInstallation(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.installationFor(c); in != nil {
		writeJSON(c.w, http.StatusOK, s.installationJSON(c, in))
	}
}

func (s *Server) getOrgInstallation(c *call) {
	s.findInstallation(c, c.r.PathValue("org"), "Organization")
}
func (s *Server) getUserInstallation(c *call) {
	s.findInstallation(c, c.r.PathValue("username"), "User")
}

// findInstallation answers the calling App's installation on one account
// of the given type, or 404 as GitHub does when it is not installed there.
func (s *Server) findInstallation(c *call, login, accountType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.installations {
		if in.app == c.app && in.account != nil && strings.EqualFold(in.account.Login, login) && in.account.Type == accountType {
			writeJSON(c.w, http.StatusOK, s.installationJSON(c, in))
			return
		}
	}
	writeError(c.w, http.StatusNotFound, "Not Found")
}
