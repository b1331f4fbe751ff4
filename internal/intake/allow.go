package intake

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// AllowedOwnersVar is the variable the webhook server reads the allow-list from.
const AllowedOwnersVar = "DRYDOCK_ALLOWED_OWNERS"

// Allowlist is who may use Drydock: the repository owners (GitHub users or
// organizations, compared case-insensitively) and GitHub App installations
// whose events are acted on. Every other delivery is answered 200
// "owner_not_allowed" before it reaches a router: no preview, no runner.
//
// There is no implicit "everyone": Handler refuses a nil Allowlist, and
// ParseAllowlist refuses an empty list. "*" is the explicit way to accept
// every owner.
type Allowlist struct {
	everyone      bool
	owners        map[string]bool // lower-cased logins
	installations map[int64]bool  // installation IDs
	entries       []string        // as configured, for logs
}

// ownerLogin is GitHub's rule for user and organization logins: letters,
// digits and single hyphens, not at either end, at most 39 characters.
var ownerLogin = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9]|-[A-Za-z0-9]){0,38}$`)

// ParseAllowlist reads the entries of DRYDOCK_ALLOWED_OWNERS: owner logins
// ("octo"), installation IDs ("installation:1234"), or "*" alone (everyone).
// Blanks around entries are ignored; an empty list, an empty entry or a
// malformed one is an error naming the variable.
func ParseAllowlist(entries []string) (*Allowlist, error) {
	a := &Allowlist{owners: map[string]bool{}, installations: map[int64]bool{}}
	for _, raw := range entries {
		e := strings.TrimSpace(raw)
		switch {
		case e == "":
			if len(entries) == 1 { // envconfig gives [""] for "  "
				continue
			}
			return nil, fmt.Errorf("%s: empty entry in %q", AllowedOwnersVar, strings.Join(entries, ","))
		case e == "*":
			a.everyone = true
		case strings.HasPrefix(strings.ToLower(e), "installation:"):
			id, err := strconv.ParseInt(e[len("installation:"):], 10, 64)
			if err != nil || id <= 0 {
				return nil, fmt.Errorf("%s: %q: want installation:<numeric installation ID>", AllowedOwnersVar, e)
			}
			a.installations[id] = true
		case ownerLogin.MatchString(e):
			a.owners[strings.ToLower(e)] = true
		default:
			return nil, fmt.Errorf("%s: %q is not a GitHub owner login (letters, digits and hyphens), installation:<id> or *", AllowedOwnersVar, e)
		}
		a.entries = append(a.entries, e)
	}
	if len(a.entries) == 0 {
		return nil, fmt.Errorf("%s is empty: Drydock acts only for the GitHub owners (users or organizations) and App installations listed there, e.g. %s=acme,octo,installation:1234; set it to * to accept every repository that can reach the webhook", AllowedOwnersVar, AllowedOwnersVar)
	}
	if a.everyone && len(a.entries) > 1 {
		return nil, fmt.Errorf("%s: * accepts everyone and cannot be combined with other entries", AllowedOwnersVar)
	}
	return a, nil
}

// AllowEveryone is the explicit "*" allow-list.
func AllowEveryone() *Allowlist {
	a, _ := ParseAllowlist([]string{"*"})
	return a
}

// AllowOwners is the allow-list of the given entries; it panics on a
// malformed one (for tests and fixed wiring; configuration goes through
// ParseAllowlist).
func AllowOwners(entries ...string) *Allowlist {
	a, err := ParseAllowlist(entries)
	if err != nil {
		panic(err)
	}
	return a
}

// Allows reports whether an event of the repository owner login owner (""
// if the payload has no repository) from the App installation installation
// (0 if none) may be acted on: either one being listed is enough.
func (a *Allowlist) Allows(owner string, installation int64) bool {
	if a == nil {
		return false
	}
	if a.everyone {
		return true
	}
	if owner != "" && a.owners[strings.ToLower(owner)] {
		return true
	}
	return installation != 0 && a.installations[installation]
}

// Everyone reports whether the list is "*".
func (a *Allowlist) Everyone() bool { return a != nil && a.everyone }

// String is the list as configured, sorted ("*" for everyone).
func (a *Allowlist) String() string {
	if a == nil {
		return ""
	}
	s := append([]string(nil), a.entries...)
	sort.Strings(s)
	return strings.Join(s, ",")
}

// errNoAllowlist is New's answer to a missing Options.Allowed.
var errNoAllowlist = errors.New(AllowedOwnersVar + " is required: Drydock acts only for listed owners or installations (set it to * to accept everyone)")
