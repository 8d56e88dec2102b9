// Package certreload serves TLS from certificate files that operators
// rotate in place: the files are read again when they change, so a renewed
// certificate, or a new client CA, is used without a restart, and a
// rotation that leaves files that do not load keeps the previous ones in
// service.
package certreload

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// certCheckInterval is how often a handshake looks whether the files
// changed.
const certCheckInterval = 10 * time.Second

// TLSConfig reads the listeners' certificate and key. With clientCAFile set,
// every client must present a certificate signed by that CA (mutual TLS).
// The files are read again when they change, so a rotated certificate or
// CA is used from the next handshakes on, without a restart. A rotated
// file that fails to load is logged, at ERROR, and the previous
// certificate or CA stays in service.
func TLSConfig(certFile, keyFile, clientCAFile string, logger *slog.Logger) (*tls.Config, error) {
	return tlsConfig(certFile, keyFile, clientCAFile, certCheckInterval, logger)
}

func tlsConfig(certFile, keyFile, clientCAFile string, interval time.Duration, logger *slog.Logger) (*tls.Config, error) {
	cert := &reloader[*tls.Certificate]{files: []string{certFile, keyFile}, interval: interval, log: logger,
		what: "the certificate files", kept: "the previous certificate is still served",
		parse: func(contents [][]byte) (*tls.Certificate, error) {
			return KeyPair(contents[0], contents[1], time.Now())
		},
		stale: func(c *tls.Certificate, now time.Time) error {
			if c.Leaf != nil && now.After(c.Leaf.NotAfter) {
				return fmt.Errorf("tls: the certificate in service expired at %s and no newer one could be loaded from its files: every client refuses it; rotate cert_file and key_file",
					c.Leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			return nil
		}}
	if err := cert.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.get(), nil },
		MinVersion:     tls.VersionTLS12,
	}
	if clientCAFile == "" {
		return cfg, nil
	}
	// Each handshake takes the config holding the current CAs. net/http,
	// unlike grpc-go, does not add its protocols to a config given per
	// client, so they are named here.
	base := cfg.Clone()
	base.ClientAuth = tls.RequireAndVerifyClientCert
	base.NextProtos = []string{"h2", "http/1.1"}
	ca := &reloader[clientCAs]{files: []string{clientCAFile}, interval: interval, log: logger,
		what: "client_ca_file", kept: "the previous CAs still verify clients",
		parse: func(contents [][]byte) (clientCAs, error) {
			pool, last, err := cas(contents[0], time.Now())
			if err != nil {
				return clientCAs{}, err
			}
			c := base.Clone()
			c.ClientCAs = pool
			return clientCAs{c, last}, nil
		},
		stale: func(c clientCAs, now time.Time) error {
			if now.After(c.expire) {
				return fmt.Errorf("tls: client_ca_file's certificates in service have all expired, the last at %s, and no newer ones could be loaded from it: every client certificate is refused; rotate client_ca_file",
					c.expire.UTC().Format(time.RFC3339))
			}
			return nil
		}}
	if err := ca.load(); err != nil {
		return nil, err
	}
	// Should a handshake ever go without the per-client config, the first
	// CAs, never the system's, verify the client.
	cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, ca.get().config.ClientCAs
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return ca.get().config, nil }
	return cfg, nil
}

// clientCAs is the config that verifies clients against client_ca_file's
// CAs, and when the last of them expires: every client is refused from
// then on.
type clientCAs struct {
	config *tls.Config
	expire time.Time
}

// NotAfter is when the certificate cfg (from TLSConfig) serves now
// expires; zero for a config without one.
func NotAfter(cfg *tls.Config) time.Time {
	if cfg == nil || cfg.GetCertificate == nil {
		return time.Time{}
	}
	c, err := cfg.GetCertificate(nil)
	if err != nil || c == nil || c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter
}

// KeyPair is the certificate and key of certPEM and keyPEM, refused
// outside the certificate's validity period at now, which every client
// would refuse: a rotation to one (an old file put back, a new one dated
// ahead of this host's clock) keeps the previous certificate, and, the
// files not changing, is tried again at each check until its period
// begins.
func KeyPair(certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &NotKeyPairError{Err: err}
	}
	leaf := c.Leaf // nil with GODEBUG x509keypairleaf=0
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: cert_file: %w", err)
		}
		c.Leaf = leaf
	}
	switch {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("tls: cert_file's certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("tls: cert_file's certificate is not valid before %s (check this host's clock)", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return &c, nil
}

// NotKeyPairError says that cert_file and key_file do not hold a PEM
// certificate and its private key; Err says why.
type NotKeyPairError struct{ Err error }

func (e *NotKeyPairError) Error() string { return "tls: load cert_file and key_file: " + e.Err.Error() }
func (e *NotKeyPairError) Unwrap() error { return e.Err }

// ErrNoCAs says that a client_ca_file holds no PEM certificate.
var ErrNoCAs = errors.New("tls: client_ca_file holds no PEM certificate")

// CAs is the pool of the certificates in pemCerts, refused when none is
// within its validity period at now: no client certificate would then
// verify, and every client would be refused. (A file that holds an expired
// CA beside its successor, during a rotation, is fine.)
func CAs(pemCerts []byte, now time.Time) (*x509.CertPool, error) {
	pool, _, err := cas(pemCerts, now)
	return pool, err
}

// cas is CAs, with the end of the latest validity period among them.
func cas(pemCerts []byte, now time.Time) (*x509.CertPool, time.Time, error) {
	pool := x509.NewCertPool()
	var latest time.Time // the latest end of a validity period seen
	valid := false
	for rest := pemCerts; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
			continue // as AppendCertsFromPEM skips it
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue // likewise
		}
		pool.AddCert(c)
		valid = valid || (!now.Before(c.NotBefore) && !now.After(c.NotAfter))
		if c.NotAfter.After(latest) {
			latest = c.NotAfter
		}
	}
	switch {
	case latest.IsZero():
		return nil, time.Time{}, ErrNoCAs
	case valid:
		return pool, latest, nil
	case now.After(latest):
		return nil, time.Time{}, fmt.Errorf("tls: client_ca_file's certificates have all expired, the last at %s", latest.UTC().Format(time.RFC3339))
	}
	return nil, time.Time{}, errors.New("tls: client_ca_file holds no certificate valid yet (check this host's clock)")
}

// reloader serves what parse makes of files, making it again when their
// contents change, at most once an interval. Files that fail to load
// (half written, say) leave the previous value in service. The files are
// read without the lock held: while one handshake reads them, perhaps
// from a mount that stalls, every other one is served the value in
// service.
type reloader[T any] struct {
	files []string
	// parse makes the value of the files' contents, read once for both
	// the hashes and the value, so that the hashes describe the value.
	parse    func(contents [][]byte) (T, error)
	interval time.Duration
	log      *slog.Logger
	// what names the files in the log; kept says what serves meanwhile.
	what, kept string
	// stale, when set, says why the value in service is no longer fit to
	// serve (a certificate that expired while its files did not change).
	stale func(T, time.Time) error

	mu        sync.Mutex
	value     T
	stamp     [][sha256.Size]byte // the files' contents' hashes when value was made
	checked   time.Time
	reloading bool   // a handshake is reading the files
	failed    string // the last reload's error, logged once
	staled    string // the value in service's last stale error, logged once
}

// get is the value in service. The handshake that finds the interval past
// reads the files and is served what they hold.
func (r *reloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reloading || time.Since(r.checked) < r.interval {
		return r.value
	}
	r.reloading, r.checked = true, time.Now()
	stamp := r.stamp
	r.mu.Unlock()
	v, newStamp, err := r.read(stamp)
	r.mu.Lock()
	r.reloading = false
	if err == nil && newStamp != nil {
		r.value, r.stamp = v, newStamp
		// Also after a failed load (a rotation caught half written): the
		// line an operator watches for, and report's "can be loaded
		// again" is left for files put back as they were, which rotate
		// nothing.
		r.failed = ""
		r.log.Info("tls: " + r.what + " rotated: in service for new connections")
	}
	r.report(err)
	if r.stale != nil {
		r.reportStale(r.stale(r.value, time.Now()))
	}
	return r.value
}

// reportStale logs, once, that the value in service is no longer fit to
// serve, so that a certificate that expires in service is not silent.
func (r *reloader[T]) reportStale(err error) {
	switch {
	case err != nil && err.Error() != r.staled:
		r.staled = err.Error()
		r.log.Error(r.staled)
	case err == nil:
		r.staled = ""
	}
}

// report tells operators of a failed reload once per error, so that a
// broken rotation is seen before the old certificate expires, and of the
// first reload that works again.
func (r *reloader[T]) report(err error) {
	switch {
	case err != nil && err.Error() != r.failed:
		r.failed = err.Error()
		r.log.Error("tls: "+r.what+" changed but cannot be loaded; "+r.kept, slog.String("error", r.failed))
	case err == nil && r.failed != "":
		r.failed = ""
		r.log.Info("tls: " + r.what + " can be loaded again")
	}
}

// load makes the first value.
func (r *reloader[T]) load() error {
	v, stamp, err := r.read(nil)
	if err != nil {
		return err
	}
	r.value, r.stamp, r.checked = v, stamp, time.Now()
	return nil
}

// read reads the files and, when their contents' hashes differ from
// stamp, parses them: it returns a nil stamp when they did not change.
// The hashes see a rotation that keeps a file's modification time (cp
// -p, rsync -t, a coarse file system) as well.
func (r *reloader[T]) read(stamp [][sha256.Size]byte) (T, [][sha256.Size]byte, error) {
	var zero T
	contents := make([][]byte, len(r.files))
	hashes := make([][sha256.Size]byte, len(r.files))
	for i, f := range r.files {
		b, err := os.ReadFile(f)
		if err != nil {
			return zero, nil, fmt.Errorf("tls: %s: %w", r.what, err)
		}
		contents[i], hashes[i] = b, sha256.Sum256(b)
	}
	if stamp != nil && slices.Equal(hashes, stamp) {
		return zero, nil, nil
	}
	v, err := r.parse(contents)
	if err != nil {
		return zero, nil, err
	}
	return v, hashes, nil
}
