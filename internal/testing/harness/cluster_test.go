package harness

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Temporal's SQL schema keeps membership ports (CLUSTER_PORT-300 and up)
// in a smallint: a cluster on a higher port starts services that all exit
// with "value ... is out of range for type smallint" (seen when the harness
// picked ports up to 40000). The script refuses such a port, and bad input
// creates nothing.
func TestClusterScriptRefusesPortsTemporalCannotStore(t *testing.T) {
	root, err := RepoRoot()
	require.NoError(t, err)
	for _, port := range []string{"40000", "abc", "80"} {
		dir := filepath.Join(t.TempDir(), "cluster")
		cmd := exec.Command(filepath.Join(root, "scripts", "cluster.sh"), "start")
		cmd.Env = append(os.Environ(), "CLUSTER_DIR="+dir, "CLUSTER_PORT="+port)
		out, err := cmd.CombinedOutput()
		require.Error(t, err, port)
		assert.Contains(t, string(out), "CLUSTER_PORT", port)
		assert.NoDirExists(t, dir, "nothing created for CLUSTER_PORT=%s", port)
	}
}

// The harness's own picks stay within what the schema can store.
func TestFreePortBlockFitsTheMembershipColumn(t *testing.T) {
	for range 20 {
		p, err := freePortBlock()
		require.NoError(t, err)
		assert.LessOrEqual(t, p, 32000)
		assert.GreaterOrEqual(t, p-300, 1024)
	}
}

// PostgreSQL runs as the postgres user, which cannot reach a CLUSTER_DIR
// under a private directory (a clone in /root: initdb failed there with
// "could not change directory ... Permission denied"). Its data then goes
// under /var/tmp, and the choice sticks to the cluster.
func TestClusterScriptPutsPostgresWhereItsUserCanReach(t *testing.T) {
	root, err := RepoRoot()
	require.NoError(t, err)
	private := t.TempDir() // 0700
	dir := filepath.Join(private, "cluster")
	home := func() string {
		cmd := exec.Command(filepath.Join(root, "scripts", "cluster.sh"), "status")
		cmd.Env = append(os.Environ(), "CLUSTER_DIR="+dir, "CLUSTER_PORT=17999", "CLUSTER_PG_PORT=55999")
		_, _ = cmd.CombinedOutput() // nothing runs: status exits 1
		b, err := os.ReadFile(filepath.Join(dir, "pg.home"))
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}
	got := home()
	if _, err := user.Lookup("postgres"); err == nil && os.Geteuid() == 0 {
		assert.True(t, strings.HasPrefix(got, "/var/tmp/drydock-cluster-pg-"), got)
	} else {
		assert.Equal(t, filepath.Join(dir, "pg"), got, "PostgreSQL runs as us: our own directory is fine")
	}
	assert.Equal(t, got, home(), "the choice is kept")
}
