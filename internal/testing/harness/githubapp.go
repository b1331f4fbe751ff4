package harness

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// AppID is the GitHub App the worker authenticates as with Options.GitHubApp.
const AppID int64 = 4242

// githubEnv is how the worker authenticates to the GitHub double: with
// GHToken, or (Options.GitHubApp) as App AppID, whose private key is
// written to Dir and whose public key the double learns. The test installs
// the App where it wants (h.GH.AddInstallation(harness.AppID, id)); each
// installation has its own token and its own rate-limit budget, as on
// GitHub.
func (h *Harness) githubEnv() ([]string, error) {
	if !h.opts.GitHubApp {
		return []string{"GITHUB_TOKEN=" + GHToken, "GITHUB_API_URL=" + h.GH.URL()}, nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("harness: generate the GitHub App's key: %w", err)
	}
	path := filepath.Join(h.opts.Dir, "github-app.private-key.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		return nil, fmt.Errorf("harness: write the GitHub App's key: %w", err)
	}
	h.GH.AddApp(AppID, "drydock-harness", &key.PublicKey)
	return []string{"GITHUB_APP_ID=" + strconv.FormatInt(AppID, 10), "GITHUB_APP_PRIVATE_KEY_FILE=" + path,
		"GITHUB_API_URL=" + h.GH.URL()}, nil
}
