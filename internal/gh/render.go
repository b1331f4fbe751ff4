package gh

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Report states with their own wording in the PR comment. Other states are
// shown as they are.
const (
	StateProvisioning = "provisioning"
	StateDeploying    = "deploying"
	StateReady        = "ready"
	StateFailed       = "failed"
	StateTearingDown  = "tearing_down"
	StateDestroyed    = "destroyed"
	StateStale        = "stale"
	StateQueued       = "queued"
)

// Report is what Drydock's PR comment shows. Every string may carry
// untrusted data (branch names, build output): RenderComment escapes it.
type Report struct {
	State       string        // provisioning, deploying, ready, failed, tearing_down, destroyed, stale
	URL         string        // the preview URL reviewers open
	SHA         string        // deployed commit
	Branch      string        // head branch
	Error       string        // last error, if any
	OutputTail  string        // tail of the failing step's output
	FailedStep  string        // the step that failed (e.g. "build")
	WorkflowURL string        // the workflow in the Temporal UI
	UpdatedAt   time.Time     // zero: not shown
	AwakeFor    time.Duration // machine time awake so far (in total once destroyed); 0: not shown
	Note        string        // free text, e.g. "torn down: PR closed"
}

// Bounds that keep a comment far below GitHub's 65,536 characters.
const (
	maxTailLines  = 60
	maxTailBytes  = 8 << 10
	maxErrorBytes = 2 << 10
	maxNoteBytes  = 1 << 10
	maxFieldBytes = 256
	maxURLBytes   = 2 << 10
)

var stateWording = map[string]string{
	StateProvisioning: "Provisioning: creating the machine and deploying",
	StateDeploying:    "Deploying a new commit",
	StateReady:        "Ready",
	StateFailed:       "Failed",
	StateTearingDown:  "Tearing down",
	StateDestroyed:    "Destroyed",
	StateStale:        "Stale",
	StateQueued:       "Queued: waiting for a free preview slot",
}

// RenderComment renders r as the Markdown body of Drydock's PR comment,
// starting with Marker. It is pure: the same Report gives the same body, so
// an unchanged report does not edit the comment again.
func RenderComment(r Report) string {
	var b strings.Builder
	b.WriteString(Marker + "\n")
	b.WriteString("### Drydock preview\n\n")
	writeFacts(&b, r)
	if note := escapeText(oneLine(r.Note, maxNoteBytes)); note != "" {
		fmt.Fprintf(&b, "\n**Note:** %s\n", note)
	}
	if r.Error != "" || r.OutputTail != "" {
		writeError(&b, r)
	}
	writeFooter(&b, r)
	return b.String()
}

// writeFacts writes the comment's list: state, preview, commit, branch and
// awake time.
func writeFacts(b *strings.Builder, r Report) {
	state := stateWording[r.State]
	if state == "" {
		state = escapeText(oneLine(r.State, maxFieldBytes))
		if state == "" {
			state = "Unknown"
		}
	}
	fmt.Fprintf(b, "- **State:** %s\n", state)
	if r.URL != "" && r.State != StateDestroyed {
		fmt.Fprintf(b, "- **Preview:** %s\n", link(r.URL, r.URL))
	}
	if r.SHA != "" {
		fmt.Fprintf(b, "- **Commit:** %s\n", codeSpan(shortSHA(r.SHA)))
	}
	if r.Branch != "" {
		fmt.Fprintf(b, "- **Branch:** %s\n", codeSpan(oneLine(r.Branch, maxFieldBytes)))
	}
	if r.AwakeFor > 0 {
		when := "so far"
		if r.State == StateDestroyed {
			when = "in total"
		}
		fmt.Fprintf(b, "- **Awake:** %s %s (machines are billed only while awake)\n", AwakeDuration(r.AwakeFor), when)
	}
}

// writeError writes the error of a failed step and the tail of its output.
func writeError(b *strings.Builder, r Report) {
	step := oneLine(r.FailedStep, maxFieldBytes)
	if step != "" {
		fmt.Fprintf(b, "\n**Error in step %s:**\n\n", codeSpan(step))
	} else {
		b.WriteString("\n**Error:**\n\n")
	}
	if msg := clean(r.Error); msg != "" {
		b.WriteString(codeBlock(truncateBytes(msg, maxErrorBytes)))
	}
	if tail, cut := outputTail(r.OutputTail); tail != "" {
		what := "Output"
		if cut {
			what = "Last lines of output"
		}
		if step != "" {
			what += " of <code>" + escapeHTML(step) + "</code>"
		}
		fmt.Fprintf(b, "\n<details><summary>%s</summary>\n\n%s\n</details>\n", what, codeBlock(tail))
	}
}

// writeFooter writes the link to the workflow and the update time.
func writeFooter(b *strings.Builder, r Report) {
	var foot []string
	if r.WorkflowURL != "" {
		foot = append(foot, link("Workflow in the Temporal UI", r.WorkflowURL))
	}
	if !r.UpdatedAt.IsZero() {
		foot = append(foot, "updated "+r.UpdatedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	if len(foot) > 0 {
		fmt.Fprintf(b, "\n<sub>%s</sub>\n", strings.Join(foot, " · "))
	}
}

// AwakeDuration renders an awake time for people: "1h 12m" from an hour
// up (hours are not folded into days: machines are billed by the hour),
// "12m 30s" below, "45s" below a minute.
func AwakeDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d <= 0:
		return "under 1s"
	case d >= time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm %ds", d/time.Minute, d%time.Minute/time.Second)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

func shortSHA(sha string) string {
	sha = oneLine(sha, maxFieldBytes)
	if len(sha) > 7 && strings.Trim(sha, "0123456789abcdefABCDEF") == "" {
		return sha[:7]
	}
	return sha
}

// ansi matches terminal escape sequences (colours, cursor moves, titles):
// build output is full of them and they render as garbage.
var ansi = regexp.MustCompile(`\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])`)

// clean makes untrusted text printable: valid UTF-8, \n line ends, no
// terminal escapes or control characters other than tab and newline.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = ansi.ReplaceAllString(s, "")
	if strings.Contains(s, "\r") {
		// A carriage return redraws the line (progress bars): keep what a
		// terminal would show last.
		lines := strings.Split(s, "\n")
		for i, l := range lines {
			if j := strings.LastIndexByte(strings.TrimRight(l, "\r"), '\r'); j >= 0 {
				l = l[j+1:]
			}
			lines[i] = strings.TrimRight(l, "\r")
		}
		s = strings.Join(lines, "\n")
	}
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case unicode.IsControl(r), r == '\u2028', r == '\u2029', r == '\uFEFF':
			return -1
		}
		return r
	}, s)
	return strings.Trim(s, "\n")
}

// oneLine cleans s into a single bounded line.
func oneLine(s string, maxBytes int) string {
	s = strings.Join(strings.Fields(clean(s)), " ")
	return truncateBytes(s, maxBytes)
}

// truncateBytes cuts s to at most n bytes on a rune boundary, marking the cut.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// outputTail keeps the last lines of output within the bounds, reporting
// whether anything was cut.
func outputTail(s string) (string, bool) {
	s = clean(s)
	if s == "" {
		return "", false
	}
	cut := false
	lines := strings.Split(s, "\n")
	if len(lines) > maxTailLines {
		lines, cut = lines[len(lines)-maxTailLines:], true
	}
	s = strings.Join(lines, "\n")
	if len(s) > maxTailBytes {
		s, cut = s[len(s)-maxTailBytes:], true
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:] // start at a whole line
		}
		for len(s) > 0 && !utf8.RuneStart(s[0]) {
			s = s[1:]
		}
	}
	return s, cut
}

// longestRun is the longest run of c in s.
func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

// codeBlock fences s with more backticks than any run inside it, so no line
// of s can close the block (CommonMark: a closing fence needs at least as
// many backticks as the opening one). Tildes never close a backtick fence.
func codeBlock(s string) string {
	fence := strings.Repeat("`", max(3, longestRun(s, '`')+1))
	return fence + "text\n" + s + "\n" + fence + "\n"
}

// codeSpan renders a one-line s as inline code that s cannot end early.
func codeSpan(s string) string {
	if s == "" {
		return ""
	}
	ticks := strings.Repeat("`", longestRun(s, '`')+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") || (strings.HasPrefix(s, " ") && strings.HasSuffix(s, " ")) {
		s = " " + s + " " // CommonMark strips one space on each side
	}
	return ticks + s + ticks
}

// escapeText backslash-escapes the ASCII punctuation that Markdown or
// GitHub would interpret (emphasis, links, HTML, tables, @mentions, #refs).
func escapeText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("\\`*_{}[]()<>#+-!|~@&", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func escapeHTML(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;").Replace(s)
}

// link renders a Markdown link to an http(s) URL; anything else is shown
// as inline code and not linked.
func link(text, href string) string {
	u, err := url.Parse(strings.TrimSpace(href))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(href) > maxURLBytes {
		return codeSpan(oneLine(href, maxFieldBytes))
	}
	dest := strings.NewReplacer("(", "%28", ")", "%29", " ", "%20", "<", "%3C", ">", "%3E").Replace(u.String())
	return "[" + escapeText(oneLine(text, maxURLBytes)) + "](" + dest + ")"
}
