package previewauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/drydock-dev/drydock/workflows"
)

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
		if v, decided := a.askMembership(ctx, token, repo); decided {
			return v
		}
		// Not a member (404), or a token that may not read memberships
		// (403): read access to the repository still counts.
	}
	return a.askReadAccess(ctx, token, repo)
}

// askMembership decides access to an org preview by an active membership
// of the owner organization; decided is false when GitHub's answer leaves
// read access to the repository to decide.
func (a *Auth) askMembership(ctx context.Context, token string, repo Repo) (v Verdict, decided bool) {
	var m struct {
		State string `json:"state"`
	}
	code, h, err := a.api(ctx, token, "/user/memberships/orgs/"+url.PathEscape(repo.Owner), &m)
	switch {
	case err != nil:
		a.log.Warn("preview access: GitHub error", "err", err)
		return Unverified, true
	case code == http.StatusOK && m.State == "active":
		return Allowed, true
	case code == http.StatusUnauthorized:
		return NeedLogin, true
	case rateLimited(code, h) || code >= 500:
		return Unverified, true
	}
	return v, false
}

// askReadAccess decides access by read access to the repository.
func (a *Auth) askReadAccess(ctx context.Context, token string, repo Repo) Verdict {
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
