package router

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/drydock-dev/drydock/workflows"
)

// Headers that name a preview when the Host cannot (local use:
// `curl -H 'X-Drydock-Repo: octo/hello' -H 'X-PR-Number: 42' 127.0.0.1:8090`).
// The router strips both before proxying.
const (
	HeaderRepo = "X-Drydock-Repo"
	HeaderPR   = "X-PR-Number"
)

// Canonical forms, so that lookups index the header map directly instead of
// canonicalizing (and allocating) on every request.
var (
	headerRepoKey = http.CanonicalHeaderKey(HeaderRepo)
	headerPRKey   = http.CanonicalHeaderKey(HeaderPR)
)

// maxPRNumber bounds the digits accepted for a pull request number.
const maxPRNumber = 999_999_999

// Target is the pull request a request is for. Owner and Repo are lower case.
type Target struct {
	Owner, Repo string
	Number      int
}

// WorkflowID is the ID of the target's PreviewLifecycle workflow.
func (t Target) WorkflowID() string {
	return workflows.PreviewWorkflowID(t.Owner, t.Repo, t.Number)
}

// String renders the target as owner/repo#n.
func (t Target) String() string {
	return t.Owner + "/" + t.Repo + "#" + strconv.Itoa(t.Number)
}

// match says what a request names.
type match int

const (
	// matchNone: no preview host and no preview headers; the router's own
	// endpoints (/healthz, /readyz) answer.
	matchNone match = iota
	// matchBad: the request tries to name a preview (a host under the
	// preview domain, or the headers) but does not parse.
	matchBad
	// matchOK: a Target.
	matchOK
)

// Mapper maps requests to pull requests. Hosts:
//
//	pr-<n>.<domain>                  the default repository's pull request n
//	pr-<n>--<owner>--<repo>.<domain> any repository's
//
// matched case-insensitively, with or without a port. GitHub logins cannot
// contain "--", so the owner ends at the first "--" after the number and the
// repository is the rest. Repository names containing dots cannot be spelled
// in one DNS label; they need the header form (HeaderRepo and HeaderPR).
type Mapper struct {
	domain            string // lower case, no leading or trailing dot
	defOwner, defRepo string // lower case; empty when no default repository
}

// NewMapper validates the preview domain and the optional default
// repository ("owner/repo").
func NewMapper(domain, defaultRepo string) (*Mapper, error) {
	d := strings.ToLower(strings.Trim(strings.TrimSpace(domain), "."))
	if !validDomain(d) {
		return nil, fmt.Errorf("preview domain %q: want a DNS name such as preview.example.com (no scheme, port or wildcard)", domain)
	}
	m := &Mapper{domain: d}
	if defaultRepo != "" {
		owner, repo, ok := splitRepo(defaultRepo)
		if !ok {
			return nil, fmt.Errorf("default repository %q: want owner/repo", defaultRepo)
		}
		m.defOwner, m.defRepo = owner, repo
	}
	return m, nil
}

// Domain is the preview domain, lower case.
func (m *Mapper) Domain() string { return m.domain }

// DefaultRepo is the default repository ("owner/repo"), or "".
func (m *Mapper) DefaultRepo() string {
	if m.defOwner == "" {
		return ""
	}
	return m.defOwner + "/" + m.defRepo
}

// Host is the host name that reaches a pull request's preview: the short form
// for the default repository, the multi-repository form otherwise. It reports
// false when no host can name the pull request (a repository name with a dot,
// or a label longer than DNS allows); such previews need the header form.
func (m *Mapper) Host(owner, repo string, number int) (string, bool) {
	owner, repo = strings.ToLower(owner), strings.ToLower(repo)
	if number <= 0 || number > maxPRNumber {
		return "", false
	}
	n := strconv.Itoa(number)
	if m.defOwner != "" && owner == m.defOwner && repo == m.defRepo {
		return "pr-" + n + "." + m.domain, true
	}
	if !validOwner(owner) || !validRepoLabel(repo) {
		return "", false
	}
	label := "pr-" + n + "--" + owner + "--" + repo
	if len(label) > 63 {
		return "", false
	}
	return label + "." + m.domain, true
}

// Map says which pull request r is for. A host that names a preview wins;
// otherwise the headers are consulted; otherwise a host under the preview
// domain is a bad preview name and any other host names none.
func (m *Mapper) Map(r *http.Request) (Target, match) {
	t, hm := m.parseHost(r.Host)
	if hm == matchOK {
		return t, matchOK
	}
	repoH, hasRepo := r.Header[headerRepoKey]
	prH, hasPR := r.Header[headerPRKey]
	if hasRepo || hasPR {
		if len(repoH) != 1 || len(prH) != 1 {
			return Target{}, matchBad
		}
		return parseHeaders(repoH[0], prH[0])
	}
	return Target{}, hm
}

// parseHost parses a Host header value (which may carry a port).
func (m *Mapper) parseHost(host string) (Target, match) {
	if i := strings.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	n := len(host) - len(m.domain)
	if n < 2 || host[n-1] != '.' || !strings.EqualFold(host[n:], m.domain) {
		if strings.EqualFold(host, m.domain) {
			return Target{}, matchBad
		}
		return Target{}, matchNone
	}
	label := strings.ToLower(host[:n-1]) // no allocation when already lower case
	if strings.IndexByte(label, '.') >= 0 || !strings.HasPrefix(label, "pr-") {
		return Target{}, matchBad
	}
	rest := label[len("pr-"):]
	i := leadingDigits(rest)
	num, ok := parseNumber(rest[:i])
	if !ok {
		return Target{}, matchBad
	}
	rest = rest[i:]
	if rest == "" {
		if m.defOwner == "" {
			return Target{}, matchBad
		}
		return Target{Owner: m.defOwner, Repo: m.defRepo, Number: num}, matchOK
	}
	owner, repo, ok := parseOwnerRepoLabel(rest)
	if !ok {
		return Target{}, matchBad
	}
	return Target{Owner: owner, Repo: repo, Number: num}, matchOK
}

// leadingDigits is the number of ASCII digits s starts with.
func leadingDigits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// parseOwnerRepoLabel parses the "--<owner>--<repo>" that follows the
// number in a multi-repository host label.
func parseOwnerRepoLabel(rest string) (owner, repo string, ok bool) {
	if !strings.HasPrefix(rest, "--") {
		return "", "", false
	}
	rest = rest[2:]
	j := strings.Index(rest, "--")
	if j < 0 {
		return "", "", false
	}
	owner, repo = rest[:j], rest[j+2:]
	if !validOwner(owner) || !validRepoLabel(repo) {
		return "", "", false
	}
	return owner, repo, true
}

func parseHeaders(repoH, prH string) (Target, match) {
	owner, repo, ok := splitRepo(strings.TrimSpace(repoH))
	if !ok {
		return Target{}, matchBad
	}
	num, ok := parseNumber(strings.TrimPrefix(strings.TrimSpace(prH), "#"))
	if !ok {
		return Target{}, matchBad
	}
	return Target{Owner: owner, Repo: repo, Number: num}, matchOK
}

// splitRepo splits and lower-cases "owner/repo".
func splitRepo(s string) (owner, repo string, ok bool) {
	owner, repo, ok = strings.Cut(s, "/")
	if !ok {
		return "", "", false
	}
	owner, repo = strings.ToLower(owner), strings.ToLower(repo)
	if !validOwner(owner) || !validRepo(repo) {
		return "", "", false
	}
	return owner, repo, true
}

// parseNumber accepts 1 to 999999999 written without leading zeros, so each
// pull request has one spelling.
func parseNumber(s string) (int, bool) {
	if s == "" || len(s) > 9 || s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// validOwner: a lower-cased GitHub login (letters, digits, single hyphens,
// no hyphen at either end, at most 39 characters).
func validOwner(s string) bool {
	if s == "" || len(s) > 39 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isLowerAlnum(c) || c == '-') {
			return false
		}
	}
	return true
}

// validRepo: a lower-cased GitHub repository name.
func validRepo(s string) bool {
	if s == "" || len(s) > 100 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isLowerAlnum(c) || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validRepoLabel: a repository name that fits in a host label (no dots).
func validRepoLabel(s string) bool {
	return validRepo(s) && !strings.Contains(s, ".")
}

// isLowerAlnum: a lower-case ASCII letter or a digit.
func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(isLowerAlnum(c) || c == '-') {
				return false
			}
		}
	}
	return true
}
