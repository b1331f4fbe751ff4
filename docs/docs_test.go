// Package docs holds no code: its tests keep the documentation honest. The
// README and every page here must link only to files and headings that exist,
// the README must stay a front door (the reference lives here), and the
// architecture picture must have been rendered from its current source.
package docs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readmeMax is the README's budget: what Drydock is, the two commands, a
// tour, the status and links. Everything else belongs in docs/.
const readmeMax = 12 * 1024

func TestReadmeIsAFrontDoor(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	assert.LessOrEqual(t, len(b), readmeMax,
		"README.md is %d bytes; move reference material into docs/ and link to it", len(b))
	assert.Contains(t, string(b), "](docs/architecture.svg)", "the README shows the architecture picture")
}

// make docs writes, after the XML declaration, a comment naming the SHA-256
// of the .dot it rendered; a changed source without a new rendering fails
// here, without needing Graphviz.
func TestArchitectureSVGIsRenderedFromTheCurrentSource(t *testing.T) {
	src, err := os.ReadFile("architecture.dot")
	require.NoError(t, err)
	svg, err := os.ReadFile("architecture.svg")
	require.NoError(t, err)
	sum := sha256.Sum256(src)
	m := regexp.MustCompile(`<!-- rendered from docs/architecture\.dot sha256:([0-9a-f]{64}) by make docs -->`).FindSubmatch(svg)
	require.NotNil(t, m, "architecture.svg carries the source hash make docs writes: run make docs")
	assert.Equal(t, hex.EncodeToString(sum[:]), string(m[1]),
		"architecture.svg was rendered from another architecture.dot: run make docs and commit both")
	assert.Contains(t, string(svg), "<svg", "architecture.svg is an SVG image")
}

// Every relative link in the README and in docs/*.md names a file that
// exists, and, when it names a heading of a Markdown file, that heading.
func TestRelativeLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("*.md")
	require.NoError(t, err)
	pages = append(pages, filepath.Join("..", "README.md"))
	require.Greater(t, len(pages), 1, "docs/ has pages")
	checked := 0
	for _, page := range pages {
		raw, err := os.ReadFile(page)
		require.NoError(t, err)
		for _, target := range links(string(raw)) {
			if problem := resolve(page, target); problem != "" {
				t.Errorf("%s: link %q: %s", page, target, problem)
			}
			checked++
		}
	}
	assert.Greater(t, checked, 20, "the pages link to each other")
}

// resolve says what is wrong with a link from page, or "" when nothing is.
func resolve(page, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return err.Error()
	}
	if u.Scheme != "" || u.Host != "" {
		return "" // the web: not checked here
	}
	file := page
	if u.Path != "" {
		if strings.HasPrefix(u.Path, "/") {
			return "absolute path: GitHub resolves it from the site root, not the repository"
		}
		file = filepath.Join(filepath.Dir(page), filepath.FromSlash(u.Path))
		if _, err := os.Stat(file); err != nil {
			return "no such file"
		}
	}
	if u.Fragment == "" || !strings.HasSuffix(file, ".md") {
		return ""
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	if !anchors(string(raw))[u.Fragment] {
		return fmt.Sprintf("no heading with the anchor #%s in %s", u.Fragment, filepath.Base(file))
	}
	return ""
}

var (
	codeSpan   = regexp.MustCompile("`[^`\n]*`")
	inlineLink = regexp.MustCompile(`!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	refLink    = regexp.MustCompile(`(?m)^\s{0,3}\[[^\]]+\]:\s*(\S+)`)
	heading    = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
)

// links returns the targets of the inline and reference links of a Markdown
// page, outside fenced code blocks and code spans.
func links(md string) []string {
	var out []string
	for _, line := range prose(md) {
		line = codeSpan.ReplaceAllString(line, "`code`")
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
		for _, m := range refLink.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// anchors returns the anchors GitHub gives the page's headings: the text
// lower-cased, without punctuation but hyphens and underscores, spaces as
// hyphens, and "-1", "-2"... on repeats.
func anchors(md string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, line := range prose(md) {
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		text := inlineLink.ReplaceAllStringFunc(m[1], func(l string) string {
			return l[strings.Index(l, "[")+1 : strings.Index(l, "](")]
		})
		slug := slugify(text)
		if n := seen[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}

func slugify(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// prose returns the page's lines outside fenced code blocks.
func prose(md string) []string {
	var out []string
	fence := ""
	for _, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case fence == "" && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")):
			fence = trimmed[:3]
		case fence != "" && strings.HasPrefix(trimmed, fence):
			fence = ""
		case fence == "":
			out = append(out, line)
		}
	}
	return out
}
