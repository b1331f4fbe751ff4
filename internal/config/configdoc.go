package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ConfigurationDoc is the page, relative to the repository root, that
// documents every binary's settings.
const ConfigurationDoc = "docs/configuration.md"

// MissingFromDocs returns the variables of spec that the repository's
// ConfigurationDoc does not document (as `NAME`), so a test can keep them in
// sync.
func MissingFromDocs(spec any) ([]string, error) {
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
			return nil, fmt.Errorf("%s: go.mod not found above %s", ConfigurationDoc, dir)
		}
		dir = parent
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ConfigurationDoc)))
	if err != nil {
		return nil, fmt.Errorf("reading the settings' documentation: %w", err)
	}
	var missing []string
	for _, k := range keys {
		if !strings.Contains(string(b), "`"+k+"`") {
			missing = append(missing, k)
		}
	}
	return missing, nil
}
