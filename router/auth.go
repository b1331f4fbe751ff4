package main

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/previewauth"
	"github.com/drydock-dev/drydock/internal/router"
)

// Login is the router's GitHub login for non-public previews (see docs/previews.md,
// "Preview login (the router)"). It is on when ROUTER_GITHUB_CLIENT_ID is set.
type Login struct {
	AuthURL            string        `envconfig:"ROUTER_AUTH_URL" desc:"origin of the login host, on the router (empty: https://auth.<PREVIEW_DOMAIN>); GitHub's callback URL is this plus /callback; http only for a loopback or .localhost host"`
	ClientID           string        `envconfig:"ROUTER_GITHUB_CLIENT_ID" desc:"client ID of the OAuth App or GitHub App users sign in with; empty: login is off and only public previews are served"`
	ClientSecret       string        `envconfig:"ROUTER_GITHUB_CLIENT_SECRET" desc:"its client secret (required with ROUTER_GITHUB_CLIENT_ID); never logged"`
	GitHubURL          string        `envconfig:"ROUTER_GITHUB_URL" default:"https://github.com/" desc:"GitHub's web origin, where /login/oauth/* live (GitHub Enterprise Server: https://HOST/)"`
	GitHubAPIURL       string        `envconfig:"ROUTER_GITHUB_API_URL" default:"https://api.github.com/" desc:"GitHub REST API base URL the router checks access with (GHES: https://HOST/api/v3/)"`
	Scopes             string        `envconfig:"ROUTER_GITHUB_SCOPES" default:"repo read:org" desc:"OAuth App scopes (a GitHub App ignores them and uses its permissions)"`
	SessionKey         string        `envconfig:"ROUTER_SESSION_KEY" desc:"secret (at least 32 bytes) that encrypts login state and session cookies; required with ROUTER_GITHUB_CLIENT_ID; same on every router replica; never logged"`
	SessionKeyPrevious string        `envconfig:"ROUTER_SESSION_KEY_PREVIOUS" desc:"the previous ROUTER_SESSION_KEY during a rotation: still opens cookies, seals none"`
	SessionTTL         time.Duration `envconfig:"ROUTER_SESSION_TTL" default:"8h" desc:"lifetime of a preview session cookie"`
	AuthCacheTTL       time.Duration `envconfig:"ROUTER_AUTH_CACHE_TTL" default:"5m" desc:"how long GitHub's answer (may this user see this repository's previews) and a preview's visibility are reused"`
}

// enabled reports whether login is configured.
func (l Login) enabled() bool { return l.ClientID != "" }

// validate names the variable at fault; it never prints a secret.
func (l Login) validate() error {
	if l.AuthCacheTTL <= 0 {
		return fmt.Errorf("configuration: ROUTER_AUTH_CACHE_TTL=%v: want a positive duration such as 5m", l.AuthCacheTTL)
	}
	if !l.enabled() {
		return l.validateOff()
	}
	if err := l.validateSecrets(); err != nil {
		return err
	}
	for name, raw := range map[string]string{"ROUTER_GITHUB_URL": l.GitHubURL, "ROUTER_GITHUB_API_URL": l.GitHubAPIURL} {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("configuration: %s=%q: want an http(s) URL", name, raw)
		}
	}
	return nil
}

// validateOff refuses login settings without ROUTER_GITHUB_CLIENT_ID.
func (l Login) validateOff() error {
	for name, v := range map[string]string{"ROUTER_GITHUB_CLIENT_SECRET": l.ClientSecret, "ROUTER_SESSION_KEY": l.SessionKey, "ROUTER_AUTH_URL": l.AuthURL} {
		if v != "" {
			return fmt.Errorf("configuration: %s is set but ROUTER_GITHUB_CLIENT_ID is not: set both to turn login on", name)
		}
	}
	return nil
}

// validateSecrets checks the client secret, the session keys and the
// session lifetime that login needs.
func (l Login) validateSecrets() error {
	switch {
	case l.ClientSecret == "":
		return fmt.Errorf("configuration: ROUTER_GITHUB_CLIENT_SECRET is required with ROUTER_GITHUB_CLIENT_ID")
	case len(l.SessionKey) < previewauth.MinKeyLen:
		return fmt.Errorf("configuration: ROUTER_SESSION_KEY must be at least %d bytes with ROUTER_GITHUB_CLIENT_ID (e.g. openssl rand -base64 48)", previewauth.MinKeyLen)
	case l.SessionKeyPrevious != "" && len(l.SessionKeyPrevious) < previewauth.MinKeyLen:
		return fmt.Errorf("configuration: ROUTER_SESSION_KEY_PREVIOUS must be at least %d bytes", previewauth.MinKeyLen)
	case l.SessionTTL <= 0:
		return fmt.Errorf("configuration: ROUTER_SESSION_TTL=%v: want a positive duration such as 8h", l.SessionTTL)
	}
	return nil
}

// auth builds the login for the mapper's preview hosts (nil when off).
func (l Login) auth(m *router.Mapper, log *slog.Logger) (*previewauth.Auth, error) {
	if !l.enabled() {
		return nil, nil
	}
	authURL := l.AuthURL
	if authURL == "" {
		authURL = "https://auth." + m.Domain()
	}
	a, err := previewauth.New(previewauth.Config{
		AuthURL: strings.TrimSuffix(authURL, "/"), ClientID: l.ClientID, ClientSecret: l.ClientSecret,
		SessionKeys: []string{l.SessionKey, l.SessionKeyPrevious}, GitHubURL: l.GitHubURL, APIURL: l.GitHubAPIURL,
		Scopes: l.Scopes, SessionTTL: l.SessionTTL, CacheTTL: l.AuthCacheTTL, Logger: log,
		PreviewHost: func(host string) (previewauth.Repo, bool) {
			owner, repo, ok := m.HostRepo(host)
			return previewauth.Repo{Owner: owner, Name: repo}, ok
		},
	})
	if err != nil {
		return nil, fmt.Errorf("configuration: ROUTER_AUTH_URL and the login settings: %w", err)
	}
	return a, nil
}
