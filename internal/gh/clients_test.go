package gh_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

func TestGitHubConfigValidate(t *testing.T) {
	_, keyFile := githubtest.GenerateAppKey(t)
	keyPEM, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	dir := t.TempDir()
	notPEM, ecPEM, corrupt := unusableKeyFiles(t, dir)

	for _, tc := range []struct {
		name       string
		cfg        gh.Config
		configured bool
		wantErr    string // substring; "" = valid
	}{
		{"local mode", gh.Config{}, false, ""},
		{"token", gh.Config{Token: "ghp_x"}, true, ""},
		{"token with whitespace", gh.Config{Token: "ghp_x\n"}, true, "GITHUB_TOKEN"},
		{"app", gh.Config{AppID: 1, AppPrivateKeyFile: keyFile}, true, ""},
		{"app with default installation", gh.Config{AppID: 1, AppPrivateKeyFile: keyFile, AppInstallationID: 9}, true, ""},
		{"token and app", gh.Config{Token: "ghp_x", AppID: 1, AppPrivateKeyFile: keyFile}, true, "mutually exclusive"},
		{"app without key", gh.Config{AppID: 1}, true, "GITHUB_APP_PRIVATE_KEY_FILE is required"},
		{"key without app", gh.Config{AppPrivateKeyFile: keyFile}, true, "GITHUB_APP_ID is required"},
		{"installation only", gh.Config{AppInstallationID: 3}, true, "GITHUB_APP_ID is required"},
		{"missing key file", gh.Config{AppID: 1, AppPrivateKeyFile: filepath.Join(dir, "absent.pem")}, true, "GITHUB_APP_PRIVATE_KEY_FILE=" + filepath.Join(dir, "absent.pem") + ": cannot read"},
		{"not PEM", gh.Config{AppID: 1, AppPrivateKeyFile: notPEM}, true, "no PEM block"},
		{"not RSA", gh.Config{AppID: 1, AppPrivateKeyFile: ecPEM}, true, "not an RSA key"},
		{"corrupt RSA", gh.Config{AppID: 1, AppPrivateKeyFile: corrupt}, true, "invalid RSA private key"},
		{"GHES URL", gh.Config{Token: "t", APIURL: "https://ghe.example.com/api/v3"}, true, ""},
		{"bad URL", gh.Config{Token: "t", APIURL: "ghe.example.com"}, true, "GITHUB_API_URL"},
		{"URL with credentials", gh.Config{Token: "t", APIURL: "https://u:p@ghe.example.com/"}, true, "GITHUB_API_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.configured, tc.cfg.Configured())
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				if tc.configured {
					_, err := gh.NewClients(tc.cfg)
					require.NoError(t, err)
				}
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			assert.NotContains(t, err.Error(), "ghp_x")
			assert.NotContains(t, err.Error(), "PRIVATE KEY")
			assert.NotContains(t, err.Error(), string(keyPEM[40:80]))
			_, err = gh.NewClients(tc.cfg)
			require.Error(t, err)
		})
	}
}

// unusableKeyFiles writes, in dir, App key files that are not one: not PEM,
// an EC key, and a corrupt RSA key.
func unusableKeyFiles(t *testing.T, dir string) (notPEM, ecPEM, corrupt string) {
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	notPEM = write("not.pem", "hello")
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	require.NoError(t, err)
	ecPEM = write("ec.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})))
	corrupt = write("corrupt.pem", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("nope")})))
	return notPEM, ecPEM, corrupt
}

func TestGitHubClientsNotConfigured(t *testing.T) {
	_, err := gh.NewClients(gh.Config{})
	require.ErrorContains(t, err, "not configured")
}

// The variables the worker will read, through the repository's envconfig loader.
func TestGitHubConfigFromEnvironment(t *testing.T) {
	type binary struct {
		GitHub gh.Config `envconfig:"GITHUB"`
	}
	keys, err := config.Keys(&binary{})
	require.NoError(t, err)
	assert.Equal(t, []string{"GITHUB_TOKEN", "GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY_FILE", "GITHUB_APP_INSTALLATION_ID", "GITHUB_API_URL"}, keys)

	var def binary
	require.NoError(t, config.Load(&def))
	assert.Equal(t, gh.DefaultAPIURL, def.GitHub.APIURL)
	assert.False(t, def.GitHub.Configured())

	t.Setenv("GITHUB_APP_ID", "12345")
	t.Setenv("GITHUB_APP_PRIVATE_KEY_FILE", "/etc/drydock/app.pem")
	t.Setenv("GITHUB_APP_INSTALLATION_ID", "678")
	t.Setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3/")
	var b binary
	require.NoError(t, config.Load(&b))
	assert.Equal(t, gh.Config{AppID: 12345, AppPrivateKeyFile: "/etc/drydock/app.pem", AppInstallationID: 678, APIURL: "https://ghe.example.com/api/v3/"}, b.GitHub)
}

func TestGitHubConfigNeverPrintsTheToken(t *testing.T) {
	cfg := gh.Config{Token: "ghp_secret", APIURL: gh.DefaultAPIURL}
	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "github", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logs.String()} {
		assert.NotContains(t, s, "ghp_secret")
		assert.Contains(t, s, "api")
	}
	assert.Contains(t, fmt.Sprint(cfg), "[redacted]")
}

const (
	appID          = 4242
	installationID = 777
)

// appClients is an App's Clients against srv (at apiURL).
func appClients(t *testing.T, srv *githubtest.Server, apiURL string, defaultInstallation int64) *gh.Clients {
	t.Helper()
	key, keyFile := githubtest.GenerateAppKey(t)
	srv.AddApp(appID, "drydock-preview", &key.PublicKey)
	srv.AddInstallation(appID, installationID)
	srv.AddRepo(owner, repo)
	cs, err := gh.NewClients(gh.Config{AppID: appID, AppPrivateKeyFile: keyFile, AppInstallationID: defaultInstallation, APIURL: apiURL})
	require.NoError(t, err)
	assert.Equal(t, "app", cs.Mode())
	return cs
}

func TestAppAuthEndToEnd(t *testing.T) {
	for _, form := range []string{"github.com", "GHES"} {
		t.Run(form, func(t *testing.T) {
			srv := githubtest.New(t)
			apiURL := srv.URL()
			if form == "GHES" {
				apiURL = srv.EnterpriseURL()
			}
			cs := appClients(t, srv, apiURL, 0)
			api, err := cs.API(installationID)
			require.NoError(t, err)

			id, err := api.EnsureDeployment(ctx(t), owner, repo, sha, env)
			require.NoError(t, err)
			require.NoError(t, api.SetDeploymentStatus(ctx(t), owner, repo, id, gh.StatusSuccess, "https://x.example", "", ""))
			_, err = api.UpsertComment(ctx(t), owner, repo, 42, "hello")
			require.NoError(t, err)
			_, err = api.UpsertComment(ctx(t), owner, repo, 42, "hello again")
			require.NoError(t, err)

			assert.Equal(t, 1, srv.InstallationTokens(installationID), "one token serves every call until it nears expiry")
			cs2, err := cs.ForInstallation(installationID)
			require.NoError(t, err)
			assert.Same(t, api.Client(), cs2, "clients are cached per installation")

			comments := srv.Comments(owner, repo, 42)
			require.Len(t, comments, 1)
			assert.Equal(t, "drydock-preview[bot]", comments[0].User.Login)
			assert.Equal(t, "Bot", comments[0].User.Type)
			assert.Equal(t, 1, comments[0].Edits)
			assert.Equal(t, "drydock-preview[bot]", srv.Deployments(owner, repo)[0].Creator.Login)

			for _, r := range srv.Requests() {
				assert.Equal(t, form == "GHES", r.Enterprise, r.Path)
				switch r.Route {
				case githubtest.RouteCreateInstallationToken, githubtest.RouteGetApp:
					assert.Equal(t, "app", r.Auth, "%s is authenticated by the App's JWT", r.Route)
				default:
					assert.Equal(t, "installation", r.Auth, r.Route)
				}
				assert.Less(t, r.Status, 400, "%s %s", r.Method, r.Path)
			}
			assert.Equal(t, 1, srv.Count(githubtest.RouteGetApp), "the App's identity is looked up once")
		})
	}
}

func TestAppInstallationTokenIsRefreshed(t *testing.T) {
	srv := githubtest.New(t)
	// ghinstallation refreshes a token a minute before it expires: a token
	// that lives 62s is due for refresh after about 2s.
	srv.SetInstallationTokenTTL(62 * time.Second)
	cs := appClients(t, srv, srv.URL(), installationID)
	srv.SetFile(owner, repo, "main", "x", "x")
	api, err := cs.API(0) // the default installation
	require.NoError(t, err)

	_, found, err := api.FetchFile(ctx(t), owner, repo, "main", "x")
	require.NoError(t, err)
	assert.True(t, found)
	require.Equal(t, 1, srv.InstallationTokens(installationID))

	deadline := time.Now().Add(10 * time.Second)
	for srv.InstallationTokens(installationID) < 2 {
		require.True(t, time.Now().Before(deadline), "the installation token was never refreshed")
		time.Sleep(250 * time.Millisecond)
		_, _, err := api.FetchFile(ctx(t), owner, repo, "main", "x")
		require.NoError(t, err)
	}
	for _, r := range srv.Requests() {
		assert.Less(t, r.Status, 400, "%s %s", r.Method, r.Path)
	}
}

func TestAppInstallationErrors(t *testing.T) {
	srv := githubtest.New(t)
	cs := appClients(t, srv, srv.URL(), 0)

	_, err := cs.ForInstallation(0)
	require.ErrorIs(t, err, gh.ErrNoInstallation)
	assert.True(t, gh.Classify(err).Permanent)

	// An installation GitHub does not know: minting its token answers 404.
	api, err := cs.API(999)
	require.NoError(t, err)
	_, err = api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.Error(t, err)
	f := gh.Classify(err)
	assert.True(t, f.Permanent, "%v", err)
	assert.Equal(t, 404, f.StatusCode)

	// A token mint that hits a 502 is retryable.
	api, err = cs.API(installationID)
	require.NoError(t, err)
	srv.FailNext(githubtest.RouteCreateInstallationToken, 1, githubtest.BadGateway())
	_, err = api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.Error(t, err)
	assert.False(t, gh.Classify(err).Permanent)
	_, err = api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.NoError(t, err)
}

func TestAppJWTFromAnotherKeyIsRefused(t *testing.T) {
	srv := githubtest.New(t)
	other, _ := githubtest.GenerateAppKey(t)
	_, keyFile := githubtest.GenerateAppKey(t)
	srv.AddApp(appID, "drydock-preview", &other.PublicKey) // GitHub knows a different key
	srv.AddInstallation(appID, installationID)
	srv.AddRepo(owner, repo)
	cs, err := gh.NewClients(gh.Config{AppID: appID, AppPrivateKeyFile: keyFile, APIURL: srv.URL()})
	require.NoError(t, err)
	api, err := cs.API(installationID)
	require.NoError(t, err)
	_, err = api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.Error(t, err)
	f := gh.Classify(err)
	assert.True(t, f.Permanent)
	assert.Equal(t, 401, f.StatusCode)
	assert.False(t, strings.Contains(err.Error(), "BEGIN"), "no key material in errors")
}
