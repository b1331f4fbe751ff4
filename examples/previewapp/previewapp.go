// Package previewapp is the demo app Drydock previews in `make dev`, the
// end-to-end tests, bench and chaos: a small Python web server (app.py) and
// its preview spec (preview.yml). They are embedded so that `bin/starter demo`
// can create the demo repository from any directory.
package previewapp

import (
	_ "embed"
	"os"
	"path/filepath"
)

// App is app.py, the demo web server.
//
//go:embed app.py
var App []byte

// Spec is preview.yml, the demo app's preview spec.
//
//go:embed preview.yml
var Spec []byte

// AppPath is where the app sits in a repository, as the spec's build and
// start commands name it.
const AppPath = "examples/previewapp/app.py"

// Write puts the app at AppPath under dir (creating the folders).
func Write(dir string) error {
	p := filepath.Join(dir, filepath.FromSlash(AppPath))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, App, 0o644)
}
