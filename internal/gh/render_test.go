package gh_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/gh"
)

// fencedBlocks returns the content of each fenced code block of md, per
// CommonMark: a block opened by n >= 3 backticks ends at the first line
// holding only >= n backticks (up to three spaces of indentation).
func fencedBlocks(t *testing.T, md string) []string {
	t.Helper()
	var blocks []string
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		open := strings.TrimLeft(lines[i], " ")
		n := len(open) - len(strings.TrimLeft(open, "`"))
		if n < 3 || len(lines[i])-len(open) > 3 {
			continue
		}
		var body []string
		closed := false
		for i++; i < len(lines); i++ {
			l := strings.TrimLeft(lines[i], " ")
			m := len(l) - len(strings.TrimLeft(l, "`"))
			if len(lines[i])-len(l) <= 3 && m >= n && strings.TrimSpace(l[m:]) == "" {
				closed = true
				break
			}
			body = append(body, lines[i])
		}
		require.True(t, closed, "unclosed code block in:\n%s", md)
		blocks = append(blocks, strings.Join(body, "\n"))
	}
	return blocks
}

func TestRenderCommentReady(t *testing.T) {
	md := gh.RenderComment(gh.Report{
		State:       gh.StateReady,
		URL:         "https://pr-42.preview.example.dev/",
		SHA:         "0123456789abcdef0123456789abcdef01234567",
		Branch:      "feature/login",
		WorkflowURL: "http://localhost:8233/namespaces/default/workflows/preview:octo%2Fhello:42",
		UpdatedAt:   time.Date(2026, 11, 22, 10, 4, 5, 0, time.FixedZone("CET", 3600)),
		AwakeFor:    12*time.Minute + 30*time.Second + 400*time.Millisecond,
	})
	assert.True(t, strings.HasPrefix(md, gh.Marker+"\n"), md)
	assert.Contains(t, md, "### Drydock preview")
	assert.Contains(t, md, "**State:** Ready")
	assert.Contains(t, md, "](https://pr-42.preview.example.dev/)", "the preview URL is a link")
	assert.Contains(t, md, "`0123456`")
	assert.NotContains(t, md, "0123456789abcdef0123456789abcdef01234567")
	assert.Contains(t, md, "`feature/login`")
	assert.Contains(t, md, "[Workflow in the Temporal UI](http://localhost:8233/namespaces/default/workflows/preview:octo%2Fhello:42)")
	assert.Contains(t, md, "updated 2026-11-22 09:04:05 UTC")
	assert.Contains(t, md, "- **Awake:** 12m 30s so far (machines are billed only while awake)\n")
	assert.NotContains(t, md, "<details>", "nothing failed")
	assert.Equal(t, md, gh.RenderComment(gh.Report{
		State: gh.StateReady, URL: "https://pr-42.preview.example.dev/", SHA: "0123456789abcdef0123456789abcdef01234567",
		Branch: "feature/login", WorkflowURL: "http://localhost:8233/namespaces/default/workflows/preview:octo%2Fhello:42",
		UpdatedAt: time.Date(2026, 11, 22, 9, 4, 5, 0, time.UTC), AwakeFor: 12*time.Minute + 30*time.Second,
	}), "pure: the same report renders the same body")
}

func TestRenderCommentFailedStepOutputStaysFenced(t *testing.T) {
	hostile := "compiling...\n" +
		"```\n" + // would close a ``` fence
		"</details>\n" +
		"`````````` ten backticks\n" +
		"@octocat #1 [link](javascript:alert(1)) <script>alert(1)</script>\n" +
		"\x1b[31merror:\x1b[0m build failed\n" +
		"progress 10%\rprogress 100%\n" +
		"last line"
	md := gh.RenderComment(gh.Report{
		State:      gh.StateFailed,
		SHA:        "89abcdef0123456789abcdef0123456789abcdef",
		Branch:     "x`y`` | <b>",
		FailedStep: "build",
		Error:      "build: exit status 2\n```\ninjected",
		OutputTail: hostile,
		Note:       "redeploy with **/redeploy** @someone",
	})
	blocks := fencedBlocks(t, md)
	require.Len(t, blocks, 2, md)
	assert.Equal(t, "build: exit status 2\n```\ninjected", blocks[0])
	tail := blocks[1]
	assert.Contains(t, tail, "```\n</details>\n`````````` ten backticks\n")
	assert.Contains(t, tail, "<script>alert(1)</script>", "kept verbatim inside the block, where it is inert")
	assert.Contains(t, tail, "error: build failed", "terminal colours are stripped")
	assert.NotContains(t, tail, "\x1b")
	assert.Contains(t, tail, "progress 100%\nlast line", "a carriage return shows the redrawn line")
	assert.NotContains(t, tail, "progress 10%\r")

	// The fence is longer than the longest backtick run, and <details> closes after it.
	assert.Contains(t, md, "\n```````````text\n")
	assert.Contains(t, md, "<details><summary>Output of <code>build</code></summary>")
	assert.True(t, strings.HasSuffix(strings.TrimSpace(md[:strings.LastIndex(md, "</details>")]), "```````````"), md)

	assert.Contains(t, md, "**Error in step `build`:**")
	assert.Contains(t, md, "- **Branch:** ```x`y`` | <b>```\n", "the branch is one inline code span")
	assert.Contains(t, md, `redeploy with \*\*/redeploy\*\* \@someone`, "free text cannot format or mention")
	assert.Contains(t, md, "**State:** Failed")
}

func TestRenderCommentBoundsAndStates(t *testing.T) {
	var long strings.Builder
	for i := range 5000 {
		long.WriteString("line ")
		long.WriteString(strings.Repeat("é", i%50))
		long.WriteString("\n")
	}
	md := gh.RenderComment(gh.Report{
		State: gh.StateFailed, FailedStep: "test", Error: strings.Repeat("e", 100000), OutputTail: long.String() + "the end",
		URL: "https://x.example/" + strings.Repeat("a", 5000), Branch: strings.Repeat("b", 1000), Note: strings.Repeat("n", 5000),
	})
	assert.Less(t, utf8.RuneCountInString(md), 20000, "far below GitHub's 65,536 characters")
	assert.True(t, utf8.ValidString(md))
	assert.Contains(t, md, "Last lines of output of <code>test</code>")
	assert.Contains(t, md, "the end\n")

	destroyed := gh.RenderComment(gh.Report{State: gh.StateDestroyed, URL: "https://pr-1.example", Note: "torn down: PR closed"})
	assert.Contains(t, destroyed, "**State:** Destroyed")
	assert.NotContains(t, destroyed, "https://pr-1.example", "a destroyed preview's URL is not offered")
	assert.Contains(t, destroyed, "**Note:** torn down: PR closed")

	assert.Contains(t, gh.RenderComment(gh.Report{State: gh.StateProvisioning}), "**State:** Provisioning")
	assert.Contains(t, gh.RenderComment(gh.Report{State: gh.StateStale}), "**State:** Stale")
	assert.Contains(t, gh.RenderComment(gh.Report{State: "<b>odd</b>"}), `**State:** \<b\>odd\</b\>`)
	assert.Contains(t, gh.RenderComment(gh.Report{}), "**State:** Unknown")

	js := gh.RenderComment(gh.Report{State: gh.StateReady, URL: "javascript:alert(1)"})
	assert.NotContains(t, js, "](javascript")
	assert.Contains(t, js, "`javascript:alert(1)`")
	parens := gh.RenderComment(gh.Report{State: gh.StateReady, URL: "https://x.example/a)b(c d"})
	assert.Contains(t, parens, "(https://x.example/a%29b%28c%20d)")
}

func TestRenderCommentAwakeTime(t *testing.T) {
	ready := gh.RenderComment(gh.Report{State: gh.StateReady, AwakeFor: time.Hour + 12*time.Minute + 29*time.Second})
	assert.Contains(t, ready, "- **Awake:** 1h 12m so far (machines are billed only while awake)\n")

	failed := gh.RenderComment(gh.Report{State: gh.StateFailed, AwakeFor: 45 * time.Second, Error: "boom"})
	assert.Contains(t, failed, "- **Awake:** 45s so far (machines are billed only while awake)\n")

	destroyed := gh.RenderComment(gh.Report{State: gh.StateDestroyed, AwakeFor: 26*time.Hour + 3*time.Minute, Note: "torn down: PR closed"})
	assert.Contains(t, destroyed, "- **Awake:** 26h 3m in total (machines are billed only while awake)\n", "on teardown: the total")

	assert.NotContains(t, gh.RenderComment(gh.Report{State: gh.StateDeploying}), "Awake", "no machine yet: no line")
}

func TestAwakeDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		200 * time.Millisecond:                                 "under 1s",
		time.Second:                                            "1s",
		59*time.Second + 600*time.Millisecond:                  "1m 0s",
		12*time.Minute + 30*time.Second:                        "12m 30s",
		59*time.Minute + 59*time.Second + 600*time.Millisecond: "1h 0m",
		time.Hour + 12*time.Minute + 31*time.Second:            "1h 13m",
		50*time.Hour + 5*time.Minute:                           "50h 5m",
	} {
		assert.Equal(t, want, gh.AwakeDuration(d), "%s", d)
	}
}
