package router

import (
	"net/http"
	"slices"
	"strings"
)

// hostOnlyCookies removes the Domain attribute from every Set-Cookie header
// of a preview's response, so each cookie a preview sets is host-only: kept
// by the browser for that preview's host alone. Without this, one preview
// (any pull request's code) could set cookies for the parent domain, and
// through it for every other preview and the router's own hosts (session
// fixation, cookie tossing).
//
// The rewrite is textual and keeps every other attribute as the app wrote
// it (Path, Expires, Max-Age, Secure, HttpOnly, SameSite, Partitioned, and
// attributes this code does not know). Browsers (RFC 6265 §5.2) split a
// Set-Cookie value on ';' only, trim the attribute name and compare it
// case-insensitively, and honour the last Domain attribute; so every
// segment after the name-value pair whose trimmed name is "domain", in any
// case and with or without a value, is dropped. A value whose name-value
// pair has no name is dropped whole: browsers ignore it or treat it as a
// nameless cookie, which no app needs.
func hostOnlyCookies(h http.Header) {
	const key = "Set-Cookie"
	vals, ok := h[key]
	if !ok {
		return
	}
	out := vals[:0]
	for _, v := range vals {
		if v, ok := stripDomain(v); ok {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		delete(h, key)
		return
	}
	// Clear what the in-place filter left behind, for the garbage collector.
	clear(vals[len(out):])
	h[key] = out
}

// stripDomain returns v without Domain attributes; ok is false when v has
// no cookie name and is dropped.
func stripDomain(v string) (string, bool) {
	pair, attrs, _ := strings.Cut(v, ";")
	name, _, hasEq := strings.Cut(pair, "=")
	if !hasEq || strings.TrimSpace(name) == "" {
		return "", false
	}
	if !containsFold(attrs, "domain") {
		return v, true // the common case: no copy
	}
	var b strings.Builder
	b.Grow(len(v))
	b.WriteString(pair)
	for attrs != "" {
		var seg string
		seg, attrs, _ = strings.Cut(attrs, ";")
		an, _, _ := strings.Cut(seg, "=")
		if strings.EqualFold(strings.TrimSpace(an), "domain") {
			continue
		}
		b.WriteByte(';')
		b.WriteString(seg)
	}
	return b.String(), true
}

// containsFold reports whether s contains sub (ASCII lower case) in any case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// privateCaching keeps a non-public preview's answer out of shared caches
// (a CDN in front of the router would otherwise serve one signed-in user's
// page to anyone): Cache-Control loses public and s-maxage and gains
// private; other directives (max-age, no-store, ...) stay, so the browser
// still caches what the app allows. Vary: Cookie covers caches that ignore
// private.
func privateCaching(h http.Header) {
	var out []string
	private := false
	for _, v := range h.Values("Cache-Control") {
		for _, d := range splitDirectives(v) {
			name, _, _ := strings.Cut(d, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "public", "s-maxage", "proxy-revalidate":
				continue
			case "private":
				private = true
			}
			out = append(out, d)
		}
	}
	if !private {
		out = append(out, "private")
	}
	h.Set("Cache-Control", strings.Join(out, ", "))
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f == "*" || strings.EqualFold(f, "Cookie") {
				return
			}
		}
	}
	h.Add("Vary", "Cookie")
}

// splitDirectives splits a Cache-Control value at the commas outside
// quoted strings (no-cache="Set-Cookie, Authorization" is one directive).
func splitDirectives(v string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				if d := strings.TrimSpace(v[start:i]); d != "" {
					out = append(out, d)
				}
				start = i + 1
			}
		}
	}
	if d := strings.TrimSpace(v[start:]); d != "" {
		out = append(out, d)
	}
	return out
}

// dropCookies removes the Set-Cookie headers that set one of names
// (compared exactly, as browsers compare cookie names).
func dropCookies(h http.Header, names []string) {
	vals := h.Values("Set-Cookie")
	kept := vals[:0:0]
	for _, v := range vals {
		name, _, _ := strings.Cut(v, "=")
		if !slices.Contains(names, strings.TrimSpace(name)) {
			kept = append(kept, v)
		}
	}
	if len(kept) == len(vals) {
		return
	}
	h.Del("Set-Cookie")
	for _, v := range kept {
		h.Add("Set-Cookie", v)
	}
}
