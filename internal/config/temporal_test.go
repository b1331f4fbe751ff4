package config_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/config"
)

// --- a throwaway PKI, made fresh by each test (no private key is committed) ---

type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pemBuf []byte
}

var serial atomic.Int64

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pemBuf: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

type leaf struct {
	certPEM, keyPEM []byte
	tls             tls.Certificate
}

// issue signs a server certificate (for 127.0.0.1 and temporal.test) or a
// client certificate named cn, valid until notAfter.
func (ca *testCA) issue(t *testing.T, cn string, server bool, notAfter time.Time) leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"temporal.test"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	l := leaf{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
	l.tls, err = tls.X509KeyPair(l.certPEM, l.keyPEM)
	require.NoError(t, err)
	return l
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// replaceFile swaps a file's contents the way rotation tools do: write
// beside it, then rename over it.
func replaceFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// --- validation ---

const secretKey = "tmprl-SECRET-api-key-0123456789"

// loadTemporal reads the TEMPORAL_* variables as the binaries do.
func loadTemporal(t *testing.T, env map[string]string) (config.Temporal, error) {
	t.Helper()
	for _, k := range []string{"ADDRESS", "NAMESPACE", "TLS", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE", "TLS_SERVER_NAME", "API_KEY", "GRPC_COMPRESSION"} {
		if v, ok := env["TEMPORAL_"+k]; ok {
			t.Setenv("TEMPORAL_"+k, v)
		} else {
			t.Setenv("TEMPORAL_"+k, "") // then unset, so defaults apply
			os.Unsetenv("TEMPORAL_" + k)
		}
	}
	var spec struct {
		Temporal config.Temporal `envconfig:"TEMPORAL"`
	}
	err := config.Load(&spec)
	return spec.Temporal, err
}

func TestTemporalVariablesAreTheDocumentedOnes(t *testing.T) {
	keys, err := config.Keys(&struct {
		Temporal config.Temporal `envconfig:"TEMPORAL"`
	}{})
	require.NoError(t, err)
	assert.Equal(t, []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TLS", "TEMPORAL_TLS_CERT_FILE",
		"TEMPORAL_TLS_KEY_FILE", "TEMPORAL_TLS_CA_FILE", "TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_API_KEY", "TEMPORAL_GRPC_COMPRESSION"}, keys)

	var usage bytes.Buffer
	require.NoError(t, config.Usage(&usage, "x", "y", &struct {
		Temporal config.Temporal `envconfig:"TEMPORAL"`
	}{Temporal: config.Temporal{APIKey: secretKey}}))
	assert.Contains(t, usage.String(), "TEMPORAL_API_KEY")
	assert.NotContains(t, usage.String(), secretKey)
}

// tlsFiles are PEM files for the validation tests: a CA, a client's
// certificate and key, another client's key, an expired pair, a file of
// junk, and a path that does not exist.
type tlsFiles struct {
	ca, cert, key, otherKey, expiredCert, expiredKey, junk, missing string
	keyPEM                                                          []byte // the client's key, which no message may quote
}

// junk is the contents of tlsFiles.junk.
const junk = "JUNK-CONTENTS-must-not-be-quoted"

func newTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	client1 := ca.issue(t, "client-1", false, time.Now().Add(time.Hour))
	client2 := ca.issue(t, "client-2", false, time.Now().Add(time.Hour))
	expired := ca.issue(t, "old", false, time.Now().Add(-time.Hour))
	return tlsFiles{
		ca:          writeFile(t, dir, "ca.pem", ca.pemBuf),
		cert:        writeFile(t, dir, "client.crt", client1.certPEM),
		key:         writeFile(t, dir, "client.key", client1.keyPEM),
		otherKey:    writeFile(t, dir, "other.key", client2.keyPEM),
		expiredCert: writeFile(t, dir, "expired.crt", expired.certPEM),
		expiredKey:  writeFile(t, dir, "expired.key", expired.keyPEM),
		junk:        writeFile(t, dir, "junk.pem", []byte(junk+"\n")),
		missing:     filepath.Join(dir, "missing.pem"),
		keyPEM:      client1.keyPEM,
	}
}

// Each bad setting is refused by Validate, Dial and DialLazy alike, with a
// message that names it and quotes no secret.
func TestTemporalValidateRefuses(t *testing.T) {
	f := newTLSFiles(t)
	certFile, keyFile, otherKey, expiredCert, expiredKey, junkFile, missing := f.cert, f.key, f.otherKey, f.expiredCert, f.expiredKey, f.junk, f.missing
	bad := []struct {
		name string
		env  map[string]string
		want []string // every one must appear in the error
	}{
		{"empty address", map[string]string{"TEMPORAL_ADDRESS": ""}, []string{"TEMPORAL_ADDRESS"}},
		{"address without port", map[string]string{"TEMPORAL_ADDRESS": "temporal.example"}, []string{"TEMPORAL_ADDRESS", "host:port"}},
		{"empty namespace", map[string]string{"TEMPORAL_NAMESPACE": ""}, []string{"TEMPORAL_NAMESPACE"}},
		{"cert without key", map[string]string{"TEMPORAL_TLS_CERT_FILE": certFile}, []string{"TEMPORAL_TLS_CERT_FILE", "TEMPORAL_TLS_KEY_FILE"}},
		{"key without cert", map[string]string{"TEMPORAL_TLS_KEY_FILE": keyFile}, []string{"TEMPORAL_TLS_KEY_FILE", "TEMPORAL_TLS_CERT_FILE"}},
		{"missing cert file", map[string]string{"TEMPORAL_TLS_CERT_FILE": missing, "TEMPORAL_TLS_KEY_FILE": keyFile}, []string{"TEMPORAL_TLS_CERT_FILE=" + missing, "cannot read"}},
		{"missing key file", map[string]string{"TEMPORAL_TLS_CERT_FILE": certFile, "TEMPORAL_TLS_KEY_FILE": missing}, []string{"TEMPORAL_TLS_KEY_FILE=" + missing, "cannot read"}},
		{"cert file not PEM", map[string]string{"TEMPORAL_TLS_CERT_FILE": junkFile, "TEMPORAL_TLS_KEY_FILE": keyFile}, []string{"TEMPORAL_TLS_CERT_FILE=" + junkFile, "no PEM certificate"}},
		{"key file not PEM", map[string]string{"TEMPORAL_TLS_CERT_FILE": certFile, "TEMPORAL_TLS_KEY_FILE": junkFile}, []string{"TEMPORAL_TLS_KEY_FILE=" + junkFile, "no PEM private key"}},
		{"certificate given as key", map[string]string{"TEMPORAL_TLS_CERT_FILE": certFile, "TEMPORAL_TLS_KEY_FILE": certFile}, []string{"TEMPORAL_TLS_KEY_FILE=" + certFile}},
		{"key of another certificate", map[string]string{"TEMPORAL_TLS_CERT_FILE": certFile, "TEMPORAL_TLS_KEY_FILE": otherKey}, []string{"TEMPORAL_TLS_KEY_FILE=" + otherKey, "TEMPORAL_TLS_CERT_FILE=" + certFile, "is not the key"}},
		{"expired certificate", map[string]string{"TEMPORAL_TLS_CERT_FILE": expiredCert, "TEMPORAL_TLS_KEY_FILE": expiredKey}, []string{"TEMPORAL_TLS_CERT_FILE=" + expiredCert, "expired"}},
		{"missing CA file", map[string]string{"TEMPORAL_TLS_CA_FILE": missing}, []string{"TEMPORAL_TLS_CA_FILE=" + missing}},
		{"CA file not PEM", map[string]string{"TEMPORAL_TLS_CA_FILE": junkFile}, []string{"TEMPORAL_TLS_CA_FILE=" + junkFile, "no PEM certificate"}},
		{"server name without TLS", map[string]string{"TEMPORAL_TLS_SERVER_NAME": "temporal.test", "TEMPORAL_API_KEY": ""}, []string{"TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_TLS"}},
		{"API key with a newline", map[string]string{"TEMPORAL_API_KEY": secretKey + "\n"}, []string{"TEMPORAL_API_KEY", "newline"}},
		{"unknown compression", map[string]string{"TEMPORAL_GRPC_COMPRESSION": "zstd"}, []string{`TEMPORAL_GRPC_COMPRESSION="zstd"`, "gzip or none"}},
		{"two problems at once", map[string]string{"TEMPORAL_ADDRESS": "", "TEMPORAL_TLS_CA_FILE": missing}, []string{"TEMPORAL_ADDRESS", "TEMPORAL_TLS_CA_FILE"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"TEMPORAL_API_KEY": secretKey} // present in every case, to show it never leaks
			for k, v := range tc.env {
				env[k] = v
			}
			cfg, err := loadTemporal(t, env)
			require.NoError(t, err)
			err = cfg.Validate()
			require.Error(t, err)
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, "configuration: "), msg)
			for _, w := range tc.want {
				assert.Contains(t, msg, w)
			}
			for _, secret := range []string{secretKey, junk, "BEGIN", string(f.keyPEM[40:80])} {
				assert.NotContains(t, msg, secret)
			}
			// Every binary validates through Dial and DialLazy.
			_, derr := cfg.Dial(quietLogger())
			assert.EqualError(t, derr, msg)
			_, derr = cfg.DialLazy(quietLogger())
			assert.EqualError(t, derr, msg)
			assert.NotContains(t, cfg.Describe(), secretKey)
		})
	}

}

// Good settings pass, and the configuration prints as its description.
func TestTemporalValidateAccepts(t *testing.T) {
	f := newTLSFiles(t)
	caFile, certFile, keyFile := f.ca, f.cert, f.key
	good := []struct {
		name     string
		env      map[string]string
		describe string
	}{
		{"defaults", nil, "127.0.0.1:7233 namespace default, plaintext"},
		{"TLS with system roots", map[string]string{"TEMPORAL_TLS": "true", "TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233", "TEMPORAL_NAMESPACE": "ns.acct"},
			"ns.acct.tmprl.cloud:7233 namespace ns.acct, TLS"},
		{"mTLS", map[string]string{"TEMPORAL_TLS_CERT_FILE": certFile, "TEMPORAL_TLS_KEY_FILE": keyFile, "TEMPORAL_TLS_CA_FILE": caFile, "TEMPORAL_TLS_SERVER_NAME": "temporal.test"},
			"127.0.0.1:7233 namespace default, mTLS (cert " + certFile + "), CA " + caFile + ", server name temporal.test"},
		{"API key", map[string]string{"TEMPORAL_API_KEY": secretKey, "TEMPORAL_ADDRESS": "us-east-1.aws.api.temporal.io:7233"},
			"us-east-1.aws.api.temporal.io:7233 namespace default, TLS, API key"},
		{"gRPC target syntax", map[string]string{"TEMPORAL_ADDRESS": "dns:///temporal.example:7233"}, "dns:///temporal.example:7233 namespace default, plaintext"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadTemporal(t, tc.env)
			require.NoError(t, err)
			require.NoError(t, cfg.Validate())
			assert.Equal(t, tc.describe, cfg.Describe())
			// Printing or logging a configuration struct shows the description, not the key.
			wrapper := struct{ Temporal config.Temporal }{cfg}
			var logged bytes.Buffer
			slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "temporal", cfg, "all", wrapper)
			for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", cfg, wrapper, wrapper, cfg), logged.String()} {
				assert.NotContains(t, s, secretKey)
				assert.Contains(t, s, tc.describe)
			}
		})
	}
}

func TestTemporalTLSNotABool(t *testing.T) {
	_, err := loadTemporal(t, map[string]string{"TEMPORAL_TLS": "maybe"})
	require.ErrorContains(t, err, `configuration: TEMPORAL_TLS="maybe"`)
}
