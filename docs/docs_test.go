// Package docs holds no code: its tests keep the documentation honest. The
// architecture picture must have been rendered from its current source.
package docs

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
