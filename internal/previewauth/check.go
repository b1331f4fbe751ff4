package previewauth

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/drydock-dev/drydock/workflows"
)

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
