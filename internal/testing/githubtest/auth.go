package githubtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// User is a GitHub account as the API shows it.
type User struct {
	Login     string `json:"login"`
	ID        int64  `json:"id"`
	NodeID    string `json:"node_id"`
	Type      string `json:"type"` // "User" or "Bot"
	SiteAdmin bool   `json:"site_admin"`
	URL       string `json:"url"`
	HTMLURL   string `json:"html_url"`
}

// App is a GitHub App as the API shows it (GET /app, performed_via_github_app).
type App struct {
	ID          int64             `json:"id"`
	Slug        string            `json:"slug"`
	NodeID      string            `json:"node_id"`
	Name        string            `json:"name"`
	Owner       User              `json:"owner"`
	Permissions map[string]string `json:"permissions"`
	Events      []string          `json:"events"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// principal is who a token authenticates.
type principal struct {
	kind           string // "user" or "installation"
	user           User   // the account its writes are attributed to
	app            *app   // installation tokens
	installationID int64
	expiresAt      time.Time // zero: never
	// scoped: a user token issued by the OAuth flow, which sees only the
	// repositories its user may read (AddToken's tokens see every one).
	scoped bool
	// scopes: a classic token's OAuth scopes (SetTokenScopes), listed in
	// X-OAuth-Scopes; nil for fine-grained and installation tokens.
	scopes []string
}

type app struct {
	App
	key *rsa.PublicKey
	bot User
	// hookURL is the App's webhook URL (SetAppWebhook); "" when none.
	hookURL string
}

type installation struct {
	id     int64
	app    *app
	issued int
	// account is who installed it (SetInstallationAccount); permissions
	// what it was granted (nil: the App's, SetInstallationPermissions).
	account     *User
	permissions map[string]string
}

// appPermissions are what an installation of the double is granted unless
// a test says otherwise (SetInstallationPermissions): the permissions
// Drydock asks its App for, previews' and runner pools' (docs/deployment.md).
var appPermissions = map[string]string{
	"deployments": "write", "issues": "write", "pull_requests": "write", "contents": "read", "metadata": "read",
	"organization_self_hosted_runners": "write", "administration": "write", "actions": "read",
}

func (s *Server) newUser(login, typ string) User {
	id := s.id()
	return User{
		Login: login, ID: id, NodeID: fmt.Sprintf("U_%d", id), Type: typ,
		URL: s.srv.URL + "/users/" + login, HTMLURL: s.srv.URL + "/" + login,
	}
}

// AddToken makes token (a personal or fine-grained token) authenticate as
// the user login. Sent as "Authorization: token <t>" or "Bearer <t>".
func (s *Server) AddToken(token, login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = &principal{kind: "user", user: s.userNamed(login)}
}

// userNamed returns the user login, the same account on every call.
func (s *Server) userNamed(login string) User {
	if u, ok := s.users[strings.ToLower(login)]; ok {
		return u
	}
	u := s.newUser(login, "User")
	s.users[strings.ToLower(login)] = u
	return u
}

// AddApp registers a GitHub App: its ID, its slug (comments it writes are by
// "<slug>[bot]") and the public half of its private key, which verifies
// the JWTs it signs.
func (s *Server) AddApp(appID int64, slug string, key *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := now()
	owner := s.newUser("drydock-dev", "Organization")
	s.apps[appID] = &app{
		App: App{
			ID: appID, Slug: slug, NodeID: fmt.Sprintf("A_%d", appID), Name: slug, Owner: owner,
			Permissions: appPermissions, Events: []string{"pull_request", "workflow_job"}, CreatedAt: t, UpdatedAt: t,
		},
		key: key,
		bot: s.newUser(slug+"[bot]", "Bot"),
	}
}

// AddInstallation installs App appID (see AddApp) with installation ID id.
// The installation may act on every repository of the double.
func (s *Server) AddInstallation(appID, id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appID]
	if a == nil {
		panic(fmt.Sprintf("githubtest: AddInstallation: no App %d (AddApp first)", appID))
	}
	s.installations[id] = &installation{id: id, app: a}
}

// SetInstallationTokenTTL sets how long installation tokens minted from now
// on live (default one hour, like GitHub's). The double refuses a token
// once it has expired. ghinstallation refreshes a token a minute before its
// expiry, so a TTL of a minute and a few seconds proves refreshes quickly.
func (s *Server) SetInstallationTokenTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenTTL = d
}

// InstallationTokens is how many tokens installation id has been issued.
func (s *Server) InstallationTokens(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.installations[id]; in != nil {
		return in.issued
	}
	return 0
}

// authenticateToken accepts "token <t>" and "Bearer <t>" for a known,
// unexpired token, as GitHub does. msg explains a refusal.
func (s *Server) authenticateToken(header string) (p *principal, msg string) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || tok == "" || (!strings.EqualFold(scheme, "token") && !strings.EqualFold(scheme, "bearer")) {
		return nil, "Requires authentication"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p = s.tokens[tok]
	if p == nil || (!p.expiresAt.IsZero() && !time.Now().Before(p.expiresAt)) {
		return nil, "Bad credentials"
	}
	return p, ""
}

// authenticateApp verifies a GitHub App JWT: RS256, signed with the key of
// the App named by iss, iat not in the future (60s of skew allowed), exp in
// the future and at most ten minutes after iat.
func (s *Server) authenticateApp(header string) (*app, string) {
	jwt, ok := parseAppJWT(header)
	if !ok {
		return nil, undecodableJWT
	}
	iss, err := strconv.ParseInt(strings.Trim(string(jwt.claims.Iss), `"`), 10, 64)
	if err != nil {
		return nil, "'Issuer' claim ('iss') must be an Integer"
	}
	s.mu.Lock()
	a := s.apps[iss]
	s.mu.Unlock()
	if a == nil {
		return nil, "Integration not found"
	}
	if !jwt.signedBy(a.key) {
		return nil, undecodableJWT
	}
	if msg := jwt.claims.timeProblem(time.Now().Unix()); msg != "" {
		return nil, msg
	}
	return a, ""
}

// undecodableJWT is GitHub's answer to an App JWT it cannot read or verify.
const undecodableJWT = "A JSON web token could not be decoded"

// appJWT is a decoded App JWT whose signature is still to be checked.
type appJWT struct {
	signed, sig string // "<header>.<claims>", and the signature segment
	claims      appClaims
}

type appClaims struct {
	Iss json.RawMessage `json:"iss"`
	Iat int64           `json:"iat"`
	Exp int64           `json:"exp"`
}

// parseAppJWT decodes "Bearer <JWT>" whose header names RS256; ok is false
// when it cannot.
func parseAppJWT(header string) (jwt appJWT, ok bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return jwt, false
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return jwt, false
	}
	var head struct {
		Alg string `json:"alg"`
	}
	if !decodeSegment(parts[0], &head) || !decodeSegment(parts[1], &jwt.claims) {
		return jwt, false
	}
	if head.Alg != "RS256" {
		return jwt, false
	}
	jwt.signed, jwt.sig = parts[0]+"."+parts[1], parts[2]
	return jwt, true
}

// signedBy reports whether the JWT's RS256 signature is key's.
func (jwt appJWT) signedBy(key *rsa.PublicKey) bool {
	sig, err := base64.RawURLEncoding.DecodeString(jwt.sig)
	if err != nil {
		return false
	}
	digest := sha256.Sum256([]byte(jwt.signed))
	return rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig) == nil
}

// timeProblem is what is wrong with the claims' exp and iat at Unix time
// t, "" when nothing is.
func (cl appClaims) timeProblem(t int64) string {
	switch {
	case cl.Exp == 0 || cl.Exp <= t:
		return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	case cl.Iat == 0 || cl.Iat > t+60:
		return "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
	case cl.Exp-cl.Iat > 600:
		return "'Expiration time' claim ('exp') is too far in the future"
	}
	return ""
}

func decodeSegment(seg string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	return err == nil && json.Unmarshal(b, v) == nil
}

func (s *Server) createInstallationToken(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.installationFor(c)
	if in == nil {
		return
	}
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	token := "ghs_" + base64.RawURLEncoding.EncodeToString(b)
	exp := now().Add(s.tokenTTL)
	s.tokens[token] = &principal{kind: "installation", user: in.app.bot, app: in.app, installationID: in.id, expiresAt: exp}
	in.issued++
	writeJSON(c.w, http.StatusCreated, map[string]any{
		"token": token, "expires_at": exp, "permissions": in.perms(), "repository_selection": "all",
	})
}

func (s *Server) getApp(c *call) {
	s.mu.Lock()
	a := c.app.App
	s.mu.Unlock()
	writeJSON(c.w, http.StatusOK, a)
}

func (s *Server) getAuthenticatedUser(c *call) {
	if c.who.kind != "user" {
		writeError(c.w, http.StatusForbidden, "Resource not accessible by integration")
		return
	}
	writeJSON(c.w, http.StatusOK, c.who.user)
}

// performedVia is the App a write was made through (nil for a user token).
func (c *call) performedVia() *App {
	if c.who == nil || c.who.app == nil {
		return nil
	}
	a := c.who.app.App
	return &a
}

// GenerateAppKey makes an RSA key for a test App and writes it as PEM
// (PKCS#1, "RSA PRIVATE KEY", the form GitHub hands out) to a file in a
// temporary directory. It returns the key and the file's path
// (GITHUB_APP_PRIVATE_KEY_FILE).
func GenerateAppKey(t testing.TB) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate App key: %v", err)
	}
	path := filepath.Join(t.TempDir(), "app.private-key.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatalf("write App key: %v", err)
	}
	return key, path
}
