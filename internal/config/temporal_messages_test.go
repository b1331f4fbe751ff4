package config_test

import (
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/drydock-dev/drydock/internal/config"
)

// messageFiles are the PEM files of the full-message tests.
type messageFiles struct {
	cert, key, otherKey, expiredCert, expiredKey, junk, badCert, badKey, missing string
	expiredAt                                                                    string // when expiredCert expired, as the message says it
}

func newMessageFiles(t *testing.T) messageFiles {
	t.Helper()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	client1 := ca.issue(t, "client-1", false, time.Now().Add(time.Hour))
	client2 := ca.issue(t, "client-2", false, time.Now().Add(time.Hour))
	expired := ca.issue(t, "old", false, time.Now().Add(-time.Hour))
	return messageFiles{
		cert:        writeFile(t, dir, "client.crt", client1.certPEM),
		key:         writeFile(t, dir, "client.key", client1.keyPEM),
		otherKey:    writeFile(t, dir, "other.key", client2.keyPEM),
		expiredCert: writeFile(t, dir, "expired.crt", expired.certPEM),
		expiredKey:  writeFile(t, dir, "expired.key", expired.keyPEM),
		junk:        writeFile(t, dir, "junk.pem", []byte("junk\n")),
		badCert:     writeFile(t, dir, "bad.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})),
		badKey:      writeFile(t, dir, "bad.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("junk")})),
		missing:     filepath.Join(dir, "missing.pem"),
		expiredAt:   expired.tls.Leaf.NotAfter.UTC().Format(time.RFC3339),
	}
}

// Every message Validate can give, in full and in the order given (the
// other tests check them by substring, and that no secret leaks): here
// several problems at once; TestTemporalValidateFileMessagesInFull has the
// certificate and key files' one by one.
func TestTemporalValidateMessagesInFullAndInOrder(t *testing.T) {
	f := newMessageFiles(t)
	certFile, keyFile, expiredCert, expiredKey, junkFile, missing, expiredAt := f.cert, f.key, f.expiredCert, f.expiredKey, f.junk, f.missing, f.expiredAt
	for _, tc := range []struct {
		name string
		cfg  config.Temporal
		want []string
	}{
		{"plaintext settings", config.Temporal{Address: " ", Namespace: " ", TLSKeyFile: keyFile, TLSServerName: "temporal.test", Compression: "zstd"}, []string{
			`TEMPORAL_ADDRESS is empty: want the frontend's host:port`,
			`TEMPORAL_NAMESPACE is empty`,
			`TEMPORAL_TLS_KEY_FILE is set but TEMPORAL_TLS_CERT_FILE is not: mTLS needs both`,
			`TEMPORAL_TLS_SERVER_NAME is set but TLS is off: set TEMPORAL_TLS=true (or a client certificate, CA file or API key)`,
			`TEMPORAL_GRPC_COMPRESSION="zstd": want gzip or none`,
		}},
		{"TLS settings", config.Temporal{Address: "temporal.example", Namespace: "default", TLSCertFile: certFile, TLSCAFile: missing, APIKey: "key\n"}, []string{
			`TEMPORAL_ADDRESS="temporal.example": want host:port`,
			`TEMPORAL_TLS_CERT_FILE is set but TEMPORAL_TLS_KEY_FILE is not: mTLS needs both`,
			`TEMPORAL_TLS_CA_FILE=` + missing + `: cannot read: no such file or directory`,
			`TEMPORAL_API_KEY contains whitespace or non-printable characters (a trailing newline?)`,
		}},
		{"expired certificate, CA not PEM", config.Temporal{Address: "h:1", Namespace: "default", TLSCertFile: expiredCert, TLSKeyFile: expiredKey, TLSCAFile: junkFile}, []string{
			`TEMPORAL_TLS_CERT_FILE=` + expiredCert + `: the certificate expired at ` + expiredAt,
			`TEMPORAL_TLS_CA_FILE=` + junkFile + `: no PEM certificate in the file`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			assert.EqualError(t, err, "configuration: "+strings.Join(tc.want, "\nconfiguration: "))
		})
	}
}

// Each message about the certificate and key files, in full.
func TestTemporalValidateFileMessagesInFull(t *testing.T) {
	f := newMessageFiles(t)
	certFile, keyFile, otherKey, junkFile, badCert, badKey, missing := f.cert, f.key, f.otherKey, f.junk, f.badCert, f.badKey, f.missing
	for _, tc := range []struct {
		name string
		cfg  config.Temporal
		want []string
	}{
		{"missing certificate", config.Temporal{Address: "h:1", Namespace: "n", TLSCertFile: missing, TLSKeyFile: keyFile}, []string{
			`TEMPORAL_TLS_CERT_FILE=` + missing + `: cannot read: no such file or directory`,
		}},
		{"certificate not PEM", config.Temporal{Address: "h:1", Namespace: "n", TLSCertFile: junkFile, TLSKeyFile: keyFile}, []string{
			`TEMPORAL_TLS_CERT_FILE=` + junkFile + `: no PEM certificate in the file`,
		}},
		{"certificate does not parse", config.Temporal{Address: "h:1", Namespace: "n", TLSCertFile: badCert, TLSKeyFile: keyFile}, []string{
			`TEMPORAL_TLS_CERT_FILE=` + badCert + `: the certificate does not parse: x509: malformed certificate`,
		}},
		{"missing key", config.Temporal{Address: "h:1", Namespace: "n", TLSCertFile: certFile, TLSKeyFile: missing}, []string{
			`TEMPORAL_TLS_KEY_FILE=` + missing + `: cannot read: no such file or directory`,
		}},
		{"key not PEM", config.Temporal{Address: "h:1", Namespace: "n", TLSCertFile: certFile, TLSKeyFile: certFile}, []string{
			`TEMPORAL_TLS_KEY_FILE=` + certFile + `: no PEM private key in the file`,
		}},
		{"key does not parse", config.Temporal{Address: "h:1", Namespace: "n", TLSCertFile: certFile, TLSKeyFile: badKey}, []string{
			`TEMPORAL_TLS_KEY_FILE=` + badKey + `: the private key does not parse (want unencrypted PKCS#8, PKCS#1 or SEC 1)`,
		}},
		{"key of another certificate", config.Temporal{Address: "h:1", Namespace: "n", TLSCertFile: certFile, TLSKeyFile: otherKey}, []string{
			`TEMPORAL_TLS_KEY_FILE=` + otherKey + ` is not the key of the certificate in TEMPORAL_TLS_CERT_FILE=` + certFile,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			assert.EqualError(t, err, "configuration: "+strings.Join(tc.want, "\nconfiguration: "))
		})
	}
}
