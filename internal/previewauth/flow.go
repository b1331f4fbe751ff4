package previewauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"time"
)

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

// loginState is the state of the login that a callback finishes: sealed
// by the auth host, unexpired, and started in this browser. When it is
// not, loginState answers the request and returns false.
func (a *Auth) loginState(w http.ResponseWriter, r *http.Request, q url.Values) (returnTo, bool) {
	var st returnTo
	if r.Method != http.MethodGet || a.seal.open("state", "", q.Get("state"), &st) != nil || a.now().Unix() >= st.Exp ||
		!a.validReturn(st) {
		a.page(w, r, http.StatusBadRequest, "Login not valid", "The login state is invalid or expired. Open the preview's address again.")
		return st, false
	}
	nonce := cookieValue(r.Header, a.stateCookie)
	if nonce == "" || subtle.ConstantTimeCompare([]byte(nonce), []byte(st.Nonce)) != 1 {
		a.page(w, r, http.StatusBadRequest, "Login not valid",
			"This login was not started in this browser (or another login replaced it). Open the preview's address again.")
		return st, false
	}
	return st, true
}

func (a *Auth) callbackHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st, ok := a.loginState(w, r, q)
	if !ok {
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
