package router

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
)

// ParseTrustedProxies parses a list of CIDR prefixes (10.0.0.0/8,
// fd00::/8) or single addresses (10.1.2.3, taken as /32 or /128): the
// proxies in front of the router whose X-Forwarded-* headers are believed.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			if p.Addr().Is4In6() {
				return nil, fmt.Errorf("trusted proxy %q: write IPv4 prefixes in IPv4 form", s)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want a CIDR prefix such as 10.0.0.0/8 or an address", s)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// trusted reports whether a is one of the configured proxies.
func (rt *Router) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range rt.trustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr is the address of the connection's other end.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// clientAddr is the address of the client a request comes from: the peer,
// unless the peer is a trusted proxy; then the right-most address of
// X-Forwarded-For that is not a trusted proxy (the entries left of it are
// whatever the client wrote). An entry that does not parse ends the walk at
// the trusted proxy that passed it on, as does a chain of trusted proxies
// only. viaProxy reports that the peer is a trusted proxy.
func (rt *Router) clientAddr(r *http.Request) (client netip.Addr, viaProxy bool) {
	peer := peerAddr(r)
	if len(rt.trustedProxies) == 0 || !rt.trusted(peer) {
		return peer, false
	}
	last := peer
	vals := r.Header["X-Forwarded-For"]
	for i := len(vals) - 1; i >= 0; i-- {
		v := vals[i]
		for v != "" {
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseForwardedAddr(entry)
			if !ok {
				return last, true
			}
			if !rt.trusted(a) {
				return a, true
			}
			last = a
		}
	}
	return last, true
}

// parseForwardedAddr parses one X-Forwarded-For entry: an address, or an
// address with a port as some proxies write it (1.2.3.4:5678, [::1]:5678).
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// setForwarded sets the X-Forwarded-* headers the preview gets (ReverseProxy
// has removed those of the incoming request): X-Forwarded-For is the client
// address alone (clientAddr); X-Forwarded-Proto and X-Forwarded-Host are
// the router's own view unless the peer is a trusted proxy, whose values
// (the right-most entry, the one it wrote) are passed on when well formed.
func (rt *Router) setForwarded(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out.Header
	client, viaProxy := rt.clientAddr(in)
	// ReverseProxy drops Forwarded and X-Forwarded-*; X-Real-IP, which
	// some apps read as the client address, is the client's to forge.
	out.Del("X-Real-Ip")
	if client.IsValid() {
		out.Set("X-Forwarded-For", client.String())
	} else {
		out.Del("X-Forwarded-For")
	}
	proto, host := "http", in.Host
	if in.TLS != nil {
		proto = "https"
	}
	if viaProxy {
		if p := strings.ToLower(lastForwarded(in.Header, "X-Forwarded-Proto")); p == "http" || p == "https" {
			proto = p
		}
		if h := lastForwarded(in.Header, "X-Forwarded-Host"); h != "" && validHostHeader(h) {
			host = h
		}
	}
	out.Set("X-Forwarded-Proto", proto)
	out.Set("X-Forwarded-Host", host)
}

// lastForwarded is the right-most comma-separated entry of a header.
func lastForwarded(h http.Header, key string) string {
	vals := h[key]
	if len(vals) == 0 {
		return ""
	}
	v := vals[len(vals)-1]
	if j := strings.LastIndexByte(v, ','); j >= 0 {
		v = v[j+1:]
	}
	return strings.TrimSpace(v)
}

// validHostHeader accepts a host[:port] made of the characters host names,
// IPv6 literals and ports use.
func validHostHeader(h string) bool {
	if len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.:[]_", c) >= 0) {
			return false
		}
	}
	return true
}
