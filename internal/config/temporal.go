package config

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// Temporal is how a binary reaches the Temporal frontend: a local dev server
// in plaintext, a self-hosted cluster over TLS or mTLS, or Temporal Cloud with
// mTLS or an API key.
//
// It prints (fmt, slog) as Describe, so the API key cannot leak through a
// logged configuration struct.
type Temporal struct {
	Address       string `envconfig:"ADDRESS" default:"127.0.0.1:7233" desc:"Temporal frontend host:port"`
	Namespace     string `envconfig:"NAMESPACE" default:"default" desc:"Temporal namespace"`
	TLS           bool   `envconfig:"TLS" default:"false" desc:"connect over TLS (system roots) even without a client certificate"`
	TLSCertFile   string `envconfig:"TLS_CERT_FILE" desc:"client certificate (PEM) for mTLS, with TEMPORAL_TLS_KEY_FILE; implies TLS; re-read when it changes on disk"`
	TLSKeyFile    string `envconfig:"TLS_KEY_FILE" desc:"client private key (PEM) for mTLS, with TEMPORAL_TLS_CERT_FILE"`
	TLSCAFile     string `envconfig:"TLS_CA_FILE" desc:"CA bundle (PEM) that verifies the server instead of the system roots; implies TLS"`
	TLSServerName string `envconfig:"TLS_SERVER_NAME" desc:"server name to verify in the server's certificate (SNI), if not the address's host"`
	APIKey        string `envconfig:"API_KEY" desc:"Temporal Cloud API key; implies TLS; never logged"`
	// Compression of the requests to Temporal: the SDK gzips them by
	// default, which was about 15% of the webhook server's CPU per
	// delivery (make bench -pprof) to shrink requests of a few kilobytes.
	Compression string `envconfig:"GRPC_COMPRESSION" default:"gzip" desc:"gzip (the SDK's default: smaller requests, for a Temporal across a WAN such as Temporal Cloud) or none (less CPU per call, for a Temporal on the same network)"`

	// MetricsHandler, when set by the binary before dialing, receives the
	// SDK's metrics.
	MetricsHandler client.MetricsHandler `ignored:"true"`
}

// Dial connects a Temporal client, logging through logger. It validates the
// configuration first, so a bad setting fails with the variable's name.
func (t Temporal) Dial(logger *slog.Logger) (client.Client, error) {
	opts, err := t.clientOptions(logger)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", t.Describe(), err)
	}
	return c, nil
}

// DialLazy returns a Temporal client that connects on first use, so a server
// can start (and report not-ready) while Temporal is still unreachable. The
// configuration is still validated now.
func (t Temporal) DialLazy(logger *slog.Logger) (client.Client, error) {
	opts, err := t.clientOptions(logger)
	if err != nil {
		return nil, err
	}
	c, err := client.NewLazyClient(opts)
	if err != nil {
		return nil, fmt.Errorf("Temporal client for %s: %w", t.Describe(), err)
	}
	return c, nil
}

// Validate checks the settings without connecting: the address's form, that
// certificate and key come together, parse and match, that the CA bundle
// holds certificates. Errors name the variable (and file) at fault, never a
// file's contents or the API key.
func (t Temporal) Validate() error {
	var l problemList
	for _, rule := range temporalRules {
		rule(t, &l)
	}
	return errors.Join(l...)
}

// temporalRules check the settings, each rule a variable or a few related
// ones, in the order their problems are listed. Every rule runs: the
// operator sees every problem at once.
var temporalRules = []func(Temporal, *problemList){
	checkAddress,
	checkNamespace,
	checkKeyPair,
	checkCAFile,
	checkServerName,
	checkCompression,
	checkAPIKey,
}

// problemList gathers configuration problems, each "configuration: ...".
type problemList []error

func (l *problemList) add(format string, args ...any) {
	*l = append(*l, fmt.Errorf("configuration: "+format, args...))
}

// addErr adds an error that says "configuration: ..." already.
func (l *problemList) addErr(err error) {
	if err != nil {
		*l = append(*l, err)
	}
}

func checkAddress(t Temporal, l *problemList) {
	switch {
	case strings.TrimSpace(t.Address) == "":
		l.add("TEMPORAL_ADDRESS is empty: want the frontend's host:port")
	case !strings.Contains(t.Address, "://"): // dns:///host:port and the like go to gRPC as they are
		if host, port, err := net.SplitHostPort(t.Address); err != nil || host == "" || port == "" {
			l.add("TEMPORAL_ADDRESS=%q: want host:port", t.Address)
		}
	}
}

func checkNamespace(t Temporal, l *problemList) {
	if strings.TrimSpace(t.Namespace) == "" {
		l.add("TEMPORAL_NAMESPACE is empty")
	}
}

// checkKeyPair: mTLS needs a certificate and its key, both readable, and
// the certificate not expired.
func checkKeyPair(t Temporal, l *problemList) {
	switch {
	case t.TLSCertFile != "" && t.TLSKeyFile == "":
		l.add("TEMPORAL_TLS_CERT_FILE is set but TEMPORAL_TLS_KEY_FILE is not: mTLS needs both")
	case t.TLSKeyFile != "" && t.TLSCertFile == "":
		l.add("TEMPORAL_TLS_KEY_FILE is set but TEMPORAL_TLS_CERT_FILE is not: mTLS needs both")
	case t.TLSCertFile != "":
		pair, err := loadKeyPair(t.TLSCertFile, t.TLSKeyFile)
		if err != nil {
			l.addErr(err)
		} else if time.Now().After(pair.Leaf.NotAfter) {
			l.add("TEMPORAL_TLS_CERT_FILE=%s: the certificate expired at %s", t.TLSCertFile, pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
}

func checkCAFile(t Temporal, l *problemList) {
	if t.TLSCAFile != "" {
		_, err := loadCAPool(t.TLSCAFile)
		l.addErr(err)
	}
}

func checkServerName(t Temporal, l *problemList) {
	if t.TLSServerName != "" && !t.tlsEnabled() {
		l.add("TEMPORAL_TLS_SERVER_NAME is set but TLS is off: set TEMPORAL_TLS=true (or a client certificate, CA file or API key)")
	}
}

func checkCompression(t Temporal, l *problemList) {
	switch t.Compression {
	case "", "gzip", "none":
	default:
		l.add("TEMPORAL_GRPC_COMPRESSION=%q: want gzip or none", t.Compression)
	}
}

func checkAPIKey(t Temporal, l *problemList) {
	if t.APIKey != "" && strings.IndexFunc(t.APIKey, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		// gRPC refuses such header values; say so now, without the value.
		l.add("TEMPORAL_API_KEY contains whitespace or non-printable characters (a trailing newline?)")
	}
}

// Describe is a log-safe summary, such as
// "127.0.0.1:7233 namespace default, mTLS (cert /etc/temporal/tls.crt)".
// It never includes the API key.
func (t Temporal) Describe() string {
	parts := []string{fmt.Sprintf("%s namespace %s", t.Address, t.Namespace)}
	switch {
	case t.TLSCertFile != "":
		parts = append(parts, "mTLS (cert "+t.TLSCertFile+")")
	case t.tlsEnabled():
		parts = append(parts, "TLS")
	default:
		parts = append(parts, "plaintext")
	}
	if t.TLSCAFile != "" {
		parts = append(parts, "CA "+t.TLSCAFile)
	}
	if t.TLSServerName != "" {
		parts = append(parts, "server name "+t.TLSServerName)
	}
	if t.APIKey != "" {
		parts = append(parts, "API key")
	}
	if t.Compression == "none" {
		parts = append(parts, "uncompressed")
	}
	return strings.Join(parts, ", ")
}

// String, GoString and LogValue keep the API key out of printed and logged
// configuration structs.
func (t Temporal) String() string       { return t.Describe() }
func (t Temporal) GoString() string     { return "config.Temporal{" + t.Describe() + "}" }
func (t Temporal) LogValue() slog.Value { return slog.StringValue(t.Describe()) }

func (t Temporal) tlsEnabled() bool {
	return t.TLS || t.TLSCertFile != "" || t.TLSCAFile != "" || t.APIKey != ""
}

// clientOptions validates t and builds the SDK's options from it.
func (t Temporal) clientOptions(logger *slog.Logger) (client.Options, error) {
	if err := t.Validate(); err != nil {
		return client.Options{}, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	opts := client.Options{
		HostPort:  t.Address,
		Namespace: t.Namespace,
		Logger:    tlog.NewStructuredLogger(logger),
	}
	if t.MetricsHandler != nil {
		opts.MetricsHandler = t.MetricsHandler
	}
	if t.tlsEnabled() {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.TLSServerName}
		if t.TLSCAFile != "" {
			pool, err := loadCAPool(t.TLSCAFile)
			if err != nil {
				return client.Options{}, err
			}
			cfg.RootCAs = pool
		}
		if t.TLSCertFile != "" {
			r := &keyPairReloader{certFile: t.TLSCertFile, keyFile: t.TLSKeyFile, logger: logger}
			if _, err := r.clientCertificate(nil); err != nil {
				return client.Options{}, err
			}
			cfg.GetClientCertificate = r.clientCertificate
		}
		opts.ConnectionOptions.TLS = cfg
	}
	if t.Compression == "none" {
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	}
	if t.APIKey != "" {
		// Sent as "authorization: Bearer <key>" on every call.
		opts.Credentials = client.NewAPIKeyStaticCredentials(t.APIKey)
	}
	return opts, nil
}

// loadKeyPair reads and checks an mTLS certificate chain and its key. Errors
// name the variable and path, and never quote the files.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	pair, err := loadCertChain(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := loadPrivateKey(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(pair.Leaf.PublicKey) {
		return tls.Certificate{}, fmt.Errorf("configuration: TEMPORAL_TLS_KEY_FILE=%s is not the key of the certificate in TEMPORAL_TLS_CERT_FILE=%s", keyFile, certFile)
	}
	pair.PrivateKey = key
	return pair, nil
}

// loadCertChain reads the certificates of TEMPORAL_TLS_CERT_FILE, the
// client's first, and parses that one.
func loadCertChain(certFile string) (tls.Certificate, error) {
	certPEM, err := readFile("TEMPORAL_TLS_CERT_FILE", certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	var pair tls.Certificate
	for _, b := range pemBlocks(certPEM, func(typ string) bool { return typ == "CERTIFICATE" }) {
		pair.Certificate = append(pair.Certificate, b.Bytes)
	}
	if len(pair.Certificate) == 0 {
		return tls.Certificate{}, fmt.Errorf("configuration: TEMPORAL_TLS_CERT_FILE=%s: no PEM certificate in the file", certFile)
	}
	if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
		return tls.Certificate{}, fmt.Errorf("configuration: TEMPORAL_TLS_CERT_FILE=%s: the certificate does not parse: %v", certFile, err)
	}
	return pair, nil
}

// loadPrivateKey reads the first private key of TEMPORAL_TLS_KEY_FILE.
func loadPrivateKey(keyFile string) (crypto.Signer, error) {
	keyPEM, err := readFile("TEMPORAL_TLS_KEY_FILE", keyFile)
	if err != nil {
		return nil, err
	}
	keys := pemBlocks(keyPEM, func(typ string) bool { return strings.HasSuffix(typ, "PRIVATE KEY") })
	if len(keys) == 0 {
		return nil, fmt.Errorf("configuration: TEMPORAL_TLS_KEY_FILE=%s: no PEM private key in the file", keyFile)
	}
	key, err := parsePrivateKey(keys[0].Bytes)
	if err != nil {
		return nil, fmt.Errorf("configuration: TEMPORAL_TLS_KEY_FILE=%s: the private key does not parse (want unencrypted PKCS#8, PKCS#1 or SEC 1)", keyFile)
	}
	return key, nil
}

// pemBlocks returns data's PEM blocks of the types wanted, in order.
func pemBlocks(data []byte, want func(typ string) bool) []*pem.Block {
	var out []*pem.Block
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		if want(b.Type) {
			out = append(out, b)
		}
	}
}

func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("unsupported key type")
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return x509.ParseECPrivateKey(der)
}

// loadCAPool reads the CA bundle that verifies the server.
func loadCAPool(file string) (*x509.CertPool, error) {
	b, err := readFile("TEMPORAL_TLS_CA_FILE", file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("configuration: TEMPORAL_TLS_CA_FILE=%s: no PEM certificate in the file", file)
	}
	return pool, nil
}

func readFile(variable, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is named already
		}
		return nil, fmt.Errorf("configuration: %s=%s: cannot read: %w", variable, path, err)
	}
	return b, nil
}

// keyPairReloader serves the client certificate for each TLS handshake,
// re-reading the files when they change on disk, so a long-running worker
// follows a rotation (cert-manager, a Kubernetes secret volume) without a
// restart. A half-written or mismatched pair keeps the previous certificate
// in use until the files settle.
type keyPairReloader struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu                sync.Mutex
	cert              *tls.Certificate
	certStat, keyStat fs.FileInfo
	warnedCert        fs.FileInfo // the cert file state last warned about, to warn once per change
}

func (r *keyPairReloader) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs, cerr := os.Stat(r.certFile)
	ks, kerr := os.Stat(r.keyFile)
	if cerr == nil && kerr == nil && r.cert != nil && !changed(r.certStat, cs) && !changed(r.keyStat, ks) {
		return r.cert, nil
	}
	// A failed stat leaves a nil FileInfo cached, so the next handshake reloads.
	pair, err := loadKeyPair(r.certFile, r.keyFile)
	if err != nil {
		if r.cert == nil {
			return nil, err
		}
		if r.warnedCert == nil || cs == nil || changed(r.warnedCert, cs) {
			r.warnedCert = cs
			r.logger.Warn("Temporal client certificate changed on disk but cannot be loaded; keeping the previous one",
				"error", err, "not_after", r.cert.Leaf.NotAfter)
		}
		return r.cert, nil
	}
	if r.cert != nil {
		r.logger.Info("Temporal client certificate reloaded", "file", r.certFile,
			"subject", pair.Leaf.Subject.String(), "serial", pair.Leaf.SerialNumber.String(), "not_after", pair.Leaf.NotAfter)
	}
	r.cert, r.certStat, r.keyStat, r.warnedCert = &pair, cs, ks, nil
	return r.cert, nil
}

// changed reports whether a file was modified or replaced (renamed over, or
// a symlink swapped) between two stats.
func changed(a, b fs.FileInfo) bool {
	return a == nil || b == nil || !a.ModTime().Equal(b.ModTime()) || a.Size() != b.Size() || !os.SameFile(a, b)
}
