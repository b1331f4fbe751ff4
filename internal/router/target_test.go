package router

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mapCase is a request Mapper.Map maps: its host and headers, the mapper
// (nil: the test's default) and the answer.
type mapCase struct {
	name    string
	m       *Mapper
	host    string
	headers map[string]string
	want    Target
	match   match
}

// testMappers are a mapper with a default repository (octo/hello) and one
// without.
func testMappers(t *testing.T) (m, noDefault *Mapper) {
	m, err := NewMapper("Preview.Example.com.", "Octo/Hello")
	require.NoError(t, err)
	noDefault, err = NewMapper("preview.localhost", "")
	require.NoError(t, err)
	return m, noDefault
}

var hello42 = Target{Owner: "octo", Repo: "hello", Number: 42}

func TestMapperMapHosts(t *testing.T) {
	m, noDefault := testMappers(t)
	runMapCases(t, m, []mapCase{
		{name: "default repo", host: "pr-42.preview.example.com", want: hello42, match: matchOK},
		{name: "with port", host: "pr-42.preview.example.com:8090", want: hello42, match: matchOK},
		{name: "upper case", host: "PR-42.Preview.EXAMPLE.com", want: hello42, match: matchOK},
		{name: "trailing dot", host: "pr-42.preview.example.com.", want: hello42, match: matchOK},
		{name: "multi-repo", host: "pr-7--some-org--my-app.preview.example.com", want: Target{"some-org", "my-app", 7}, match: matchOK},
		{name: "multi-repo upper case and port", host: "PR-7--Some-Org--My_App.preview.example.com:443", want: Target{"some-org", "my_app", 7}, match: matchOK},
		{name: "multi-repo repo with double hyphen", host: "pr-7--octo--a--b.preview.example.com", want: Target{"octo", "a--b", 7}, match: matchOK},
		{name: "multi-repo names the default repo", host: "pr-42--octo--hello.preview.example.com", want: hello42, match: matchOK},
		{name: "multi-repo without default", m: noDefault, host: "pr-3--octo--hello.preview.localhost:8090", want: Target{"octo", "hello", 3}, match: matchOK},
		{name: "short form without default", m: noDefault, host: "pr-3.preview.localhost", match: matchBad},
		{name: "no preview", host: "127.0.0.1:8090", match: matchNone},
		{name: "other domain", host: "pr-42.example.com", match: matchNone},
		{name: "suffix without dot", host: "pr-42xpreview.example.com", match: matchNone},
		{name: "ipv6", host: "[::1]:8090", match: matchNone},
		{name: "bare domain", host: "preview.example.com", match: matchBad},
		{name: "nested label", host: "www.pr-42.preview.example.com", match: matchBad},
		{name: "not pr", host: "42.preview.example.com", match: matchBad},
		{name: "no number", host: "pr-.preview.example.com", match: matchBad},
		{name: "leading zero", host: "pr-042.preview.example.com", match: matchBad},
		{name: "zero", host: "pr-0.preview.example.com", match: matchBad},
		{name: "huge number", host: "pr-12345678901.preview.example.com", match: matchBad},
		{name: "garbage after number", host: "pr-42x.preview.example.com", match: matchBad},
		{name: "single hyphen", host: "pr-42-octo-hello.preview.example.com", match: matchBad},
		{name: "missing repo", host: "pr-42--octo.preview.example.com", match: matchBad},
		{name: "empty repo", host: "pr-42--octo--.preview.example.com", match: matchBad},
		{name: "empty owner", host: "pr-42----hello.preview.example.com", match: matchBad},
		{name: "owner ends with hyphen", host: "pr-42--octo---hello.preview.example.com", want: Target{"octo", "-hello", 42}, match: matchOK},
		{name: "bad owner char", host: "pr-42--oc_to--hello.preview.example.com", match: matchBad},
	})
}

func TestMapperMapHeaders(t *testing.T) {
	m, _ := testMappers(t)
	runMapCases(t, m, []mapCase{
		{name: "headers", host: "127.0.0.1:8090", headers: map[string]string{"X-Drydock-Repo": "Octo/Hello.js", "X-PR-Number": "9"}, want: Target{"octo", "hello.js", 9}, match: matchOK},
		{name: "headers on the bare domain", host: "preview.example.com", headers: map[string]string{"X-Drydock-Repo": "a/b", "X-PR-Number": "#1"}, want: Target{"a", "b", 1}, match: matchOK},
		{name: "host wins over headers", host: "pr-42.preview.example.com", headers: map[string]string{"X-Drydock-Repo": "a/b", "X-PR-Number": "1"}, want: hello42, match: matchOK},
		{name: "header repo without slash", host: "localhost", headers: map[string]string{"X-Drydock-Repo": "octo", "X-PR-Number": "1"}, match: matchBad},
		{name: "header bad number", host: "localhost", headers: map[string]string{"X-Drydock-Repo": "octo/hello", "X-PR-Number": "one"}, match: matchBad},
		{name: "header missing number", host: "localhost", headers: map[string]string{"X-Drydock-Repo": "octo/hello"}, match: matchBad},
		{name: "header missing repo", host: "localhost", headers: map[string]string{"X-PR-Number": "1"}, match: matchBad},
		{name: "header dotdot repo", host: "localhost", headers: map[string]string{"X-Drydock-Repo": "octo/..", "X-PR-Number": "1"}, match: matchBad},
		{name: "header nested path", host: "localhost", headers: map[string]string{"X-Drydock-Repo": "octo/a/b", "X-PR-Number": "1"}, match: matchBad},
	})
}

func runMapCases(t *testing.T, m *Mapper, cases []mapCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mm := tc.m
			if mm == nil {
				mm = m
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.Host = tc.host
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			got, match := mm.Map(r)
			assert.Equal(t, tc.match, match)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestMapperHost(t *testing.T) {
	m, err := NewMapper("preview.localhost", "octo/hello")
	require.NoError(t, err)
	for _, tc := range []struct {
		owner, repo string
		n           int
		want        string
	}{
		{"Octo", "Hello", 42, "pr-42.preview.localhost"},
		{"some-org", "my-app", 7, "pr-7--some-org--my-app.preview.localhost"},
		{"octo", "hello.js", 7, ""},
		{"octo", "hello", 0, ""},
	} {
		got, ok := m.Host(tc.owner, tc.repo, tc.n)
		assert.Equal(t, tc.want, got)
		assert.Equal(t, tc.want != "", ok)
		if ok { // and back
			r := httptest.NewRequest("GET", "/", nil)
			r.Host = got
			tgt, match := m.Map(r)
			assert.Equal(t, matchOK, match)
			assert.Equal(t, tc.n, tgt.Number)
		}
	}
	assert.Equal(t, "preview:octo/hello:42", Target{"octo", "hello", 42}.WorkflowID())
}

func TestNewMapperRejects(t *testing.T) {
	for _, d := range []string{"", "http://preview.localhost", "preview.localhost:8090", "*.preview.localhost", "a..b"} {
		_, err := NewMapper(d, "")
		assert.Error(t, err, d)
	}
	for _, r := range []string{"octo", "octo/", "/hello", "oc to/hello", "octo/hel lo"} {
		_, err := NewMapper("preview.localhost", r)
		assert.Error(t, err, r)
	}
}
