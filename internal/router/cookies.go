package router

import (
	"net/http"
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
