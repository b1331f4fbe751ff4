package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MissingFromReadme returns the variables of spec that the repository's
// README.md does not document (as `NAME`), so a test can keep them in sync.
func MissingFromReadme(spec any) ([]string, error) {
	keys, err := Keys(spec)
	if err != nil {
		return nil, err
	}
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, fmt.Errorf("README.md: go.mod not found above %s", dir)
		}
		dir = parent
	}
	b, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, k := range keys {
		if !strings.Contains(string(b), "`"+k+"`") {
			missing = append(missing, k)
		}
	}
	return missing, nil
}
