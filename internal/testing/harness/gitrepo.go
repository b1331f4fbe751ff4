package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/drydock-dev/drydock/examples/previewapp"
)

// GitRepo is a local git repository standing in for a pull request's head
// repository: the emulator's machines clone it by path.
type GitRepo struct {
	Dir string
}

// NewGitRepo creates a repository in dir holding the example preview app
// (examples/previewapp).
func NewGitRepo(dir string) (*GitRepo, error) {
	if err := previewapp.Write(dir); err != nil {
		return nil, err
	}
	r := &GitRepo{Dir: dir}
	if _, err := r.git("init", "-q", "-b", "main"); err != nil {
		return nil, err
	}
	if _, err := r.Commit("the demo app"); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *GitRepo) git(args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", r.Dir, "-c", "user.name=harness", "-c", "user.email=harness@drydock.invalid"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Commit changes a file, commits it and returns the new head SHA.
func (r *GitRepo) Commit(msg string) (string, error) {
	if err := os.WriteFile(filepath.Join(r.Dir, "CHANGES"), []byte(msg+"\n"), 0o644); err != nil {
		return "", err
	}
	if _, err := r.git("add", "-A"); err != nil {
		return "", err
	}
	if _, err := r.git("commit", "-q", "-m", msg); err != nil {
		return "", err
	}
	return r.Head()
}

// Head is the SHA of the current commit.
func (r *GitRepo) Head() (string, error) { return r.git("rev-parse", "HEAD") }
