// Package loopback keeps local development servers local: it refuses to
// listen beyond loopback, and refuses requests whose Host header is not a
// loopback name, which defeats DNS rebinding (a web page on evil.example whose
// name is made to resolve to 127.0.0.1 reaches the server, but its requests
// still say Host: evil.example).
package loopback

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// IsLoopbackHost reports whether host (no port; IPv6 with or without
// brackets) is "localhost" or a loopback IP address. Names under .localhost
// are not: make dev serves previews (code from pull requests) there.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckListen returns an error naming variable unless addr (host:port)
// listens on loopback only: "localhost" or a loopback IP. An empty host
// (":8080"), 0.0.0.0, [::] or a LAN address are refused.
func CheckListen(variable, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s=%q: want host:port: %w", variable, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s=%q is not a loopback address: use 127.0.0.1:<port> or [::1]:<port>", variable, addr)
	}
	return nil
}

// Guard serves next only for requests whose Host is a loopback name or
// address (IsLoopbackHost), or the host of listenAddr; any other Host is
// answered 421 Misdirected Request and next never sees the request.
func Guard(next http.Handler, listenAddr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !HostAllowed(r.Host, listenAddr) {
			http.Error(w, Refusal, http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Refusal is the text of Guard's 421 answer.
const Refusal = "misdirected request: this local development server only answers requests addressed to localhost or a loopback address"

// HostAllowed reports whether a request's Host (host or host:port) names
// this local server: a loopback name or address, or listenAddr's host.
func HostAllowed(hostport, listenAddr string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if host == "" {
		return false
	}
	listenHost, _, _ := net.SplitHostPort(listenAddr)
	listenHost = strings.ToLower(strings.Trim(listenHost, "[]"))
	return IsLoopbackHost(host) || (listenHost != "" && host == listenHost)
}
