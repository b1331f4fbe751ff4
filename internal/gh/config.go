// Package gh is Drydock's GitHub side: it builds authenticated go-github
// clients (a personal or fine-grained token, or a GitHub App with one cached
// client per installation), performs the reporting calls the preview
// workflow needs (deployments and their statuses, one PR comment kept up to
// date, reading a file at a ref), renders that comment, and classifies
// GitHub's errors as permanent or worth retrying. It has no Temporal import.
package gh

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
)

// DefaultAPIURL is github.com's REST API.
const DefaultAPIURL = "https://api.github.com/"

// Config is how Drydock authenticates to GitHub. Embed it in a binary's
// configuration under the GITHUB prefix, as the worker does with Dedalus:
//
//	GitHub gh.Config `envconfig:"GITHUB"`
//
// which reads GITHUB_TOKEN, GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY_FILE,
// GITHUB_APP_INSTALLATION_ID and GITHUB_API_URL. Set either a token or an
// App (ID and key file); with neither, Drydock runs in local mode and skips
// reporting to GitHub.
type Config struct {
	Token             string `envconfig:"TOKEN" desc:"personal or fine-grained access token; excludes the GITHUB_APP_* settings; never logged"`
	AppID             int64  `envconfig:"APP_ID" desc:"GitHub App ID (with GITHUB_APP_PRIVATE_KEY_FILE)"`
	AppPrivateKeyFile string `envconfig:"APP_PRIVATE_KEY_FILE" desc:"path of the GitHub App's private key (PEM)"`
	AppInstallationID int64  `envconfig:"APP_INSTALLATION_ID" desc:"default App installation ID, used when an event carries none"`
	APIURL            string `envconfig:"API_URL" default:"https://api.github.com/" desc:"GitHub REST API base URL (GitHub Enterprise Server: https://HOST/api/v3/)"`
}

// Configured reports whether any credentials are set. False means local
// mode: GitHub reporting is skipped.
func (c Config) Configured() bool {
	return c.Token != "" || c.AppID != 0 || c.AppPrivateKeyFile != "" || c.AppInstallationID != 0
}

// String describes the configuration without the token, so printing or
// logging a Config cannot leak it.
func (c Config) String() string {
	tok := ""
	if c.Token != "" {
		tok = "[redacted]"
	}
	return fmt.Sprintf("{Token:%s AppID:%d AppPrivateKeyFile:%s AppInstallationID:%d APIURL:%s}",
		tok, c.AppID, c.AppPrivateKeyFile, c.AppInstallationID, c.APIURL)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return "gh.Config" + c.String() }

// LogValue keeps the token out of structured logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("token_set", c.Token != ""), slog.Int64("app_id", c.AppID),
		slog.String("app_private_key_file", c.AppPrivateKeyFile), slog.Int64("app_installation_id", c.AppInstallationID),
		slog.String("api_url", c.APIURL))
}

// Validate checks the settings without contacting GitHub: a token and an App
// exclude each other, an App needs its ID and a readable RSA private key, and
// the API URL must be an absolute http(s) URL. Errors name the variable and
// never contain a secret.
func (c Config) Validate() error {
	if _, err := c.apiURL(); err != nil {
		return err
	}
	app := c.AppID != 0 || c.AppPrivateKeyFile != "" || c.AppInstallationID != 0
	switch {
	case c.Token != "" && app:
		return errors.New("configuration: GITHUB_TOKEN and GITHUB_APP_* are mutually exclusive: use a token or a GitHub App, not both")
	case c.Token != "":
		if strings.TrimSpace(c.Token) != c.Token || strings.ContainsAny(c.Token, " \t\r\n") {
			return errors.New("configuration: GITHUB_TOKEN contains whitespace")
		}
		return nil
	case !app:
		return nil // local mode
	}
	return c.validateApp()
}

// validateApp checks the settings of a GitHub App: its ID, installation ID
// and private key.
func (c Config) validateApp() error {
	if c.AppID <= 0 {
		return errors.New("configuration: GITHUB_APP_ID is required (a positive integer) when GITHUB_APP_PRIVATE_KEY_FILE or GITHUB_APP_INSTALLATION_ID is set")
	}
	if c.AppPrivateKeyFile == "" {
		return errors.New("configuration: GITHUB_APP_PRIVATE_KEY_FILE is required with GITHUB_APP_ID")
	}
	if c.AppInstallationID < 0 {
		return errors.New("configuration: GITHUB_APP_INSTALLATION_ID must not be negative")
	}
	_, err := c.privateKey()
	return err
}

// apiURL parses APIURL (default DefaultAPIURL) with the trailing slash
// go-github requires.
func (c Config) apiURL() (*url.URL, error) {
	raw := c.APIURL
	if raw == "" {
		raw = DefaultAPIURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("configuration: GITHUB_API_URL=%q is not an http(s) URL such as %s or https://ghe.example.com/api/v3/", raw, DefaultAPIURL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}

// privateKey reads and parses the App's key (PKCS#1, as GitHub issues it, or
// PKCS#8). Errors name the file, never its content.
func (c Config) privateKey() (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(c.AppPrivateKeyFile)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is named below; keep the message short
		}
		return nil, fmt.Errorf("configuration: GITHUB_APP_PRIVATE_KEY_FILE=%s: cannot read: %v", c.AppPrivateKeyFile, err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("configuration: GITHUB_APP_PRIVATE_KEY_FILE=%s: no PEM block found (want the .pem file GitHub generated for the App)", c.AppPrivateKeyFile)
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("configuration: GITHUB_APP_PRIVATE_KEY_FILE=%s: invalid RSA private key", c.AppPrivateKeyFile)
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("configuration: GITHUB_APP_PRIVATE_KEY_FILE=%s: invalid PKCS#8 private key", c.AppPrivateKeyFile)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("configuration: GITHUB_APP_PRIVATE_KEY_FILE=%s: not an RSA key (GitHub Apps sign with RS256)", c.AppPrivateKeyFile)
		}
		return rk, nil
	default:
		return nil, fmt.Errorf("configuration: GITHUB_APP_PRIVATE_KEY_FILE=%s: PEM block is %q, want \"RSA PRIVATE KEY\"", c.AppPrivateKeyFile, block.Type)
	}
}
