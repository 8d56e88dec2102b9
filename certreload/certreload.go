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
		parse: func() (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("tls: load cert_file and key_file: %w", err)
			}
			leaf := c.Leaf // nil with GODEBUG x509keypairleaf=0
			if leaf == nil {
				if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
					return nil, fmt.Errorf("tls: cert_file: %w", err)
				}
			}
			if err := inValidity(leaf, time.Now()); err != nil {
				return nil, err
			}
			return &c, nil
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
	ca := &reloader[*tls.Config]{files: []string{clientCAFile}, interval: interval, log: logger,
		what: "client_ca_file", kept: "the previous CAs still verify clients",
		parse: func() (*tls.Config, error) {
			pool, err := readCAs(clientCAFile)
			if err != nil {
				return nil, err
			}
			c := base.Clone()
			c.ClientCAs = pool
			return c, nil
		}}
	if err := ca.load(); err != nil {
		return nil, err
	}
	// Should a handshake ever go without the per-client config, the first
	// CAs, never the system's, verify the client.
	cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, ca.get().ClientCAs
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return ca.get(), nil }
	return cfg, nil
}

// inValidity refuses a certificate outside its validity period at now,
// which every client would refuse: a rotation to one (an old file put
// back, a new one dated ahead of this host's clock) keeps the previous
// certificate, and, the files not changing, is tried again at each check
// until its period begins.
func inValidity(c *x509.Certificate, now time.Time) error {
	switch {
	case now.After(c.NotAfter):
		return fmt.Errorf("tls: cert_file's certificate expired at %s", c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Errorf("tls: cert_file's certificate is not valid before %s (check this host's clock)", c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

func readCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("tls: client_ca_file holds no PEM certificate")
	}
	return pool, nil
}

// reloader serves what parse makes of files, making it again when their
// contents change, at most once an interval. Files that fail to load
// (half written, say) leave the previous value in service.
type reloader[T any] struct {
	files    []string
	parse    func() (T, error)
	interval time.Duration
	log      *slog.Logger
	// what names the files in the log; kept says what serves meanwhile.
	what, kept string

	mu      sync.Mutex
	value   T
	stamp   [][sha256.Size]byte // the files' contents' hashes when value was made
	checked time.Time
	failed  string // the last reload's error, logged once
}

func (r *reloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= r.interval {
		r.reloadLocked()
	}
	return r.value
}

// reloadLocked reads the files again if they changed. On failure the
// previous value stays, and operators are told once per error, so that a
// broken rotation is seen before the old certificate expires.
func (r *reloader[T]) reloadLocked() {
	err := r.loadLocked()
	switch {
	case err != nil && err.Error() != r.failed:
		r.failed = err.Error()
		r.log.Error("tls: "+r.what+" changed but cannot be loaded; "+r.kept, slog.String("error", r.failed))
	case err == nil && r.failed != "":
		r.failed = ""
		r.log.Info("tls: " + r.what + " load again")
	}
}

func (r *reloader[T]) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *reloader[T]) loadLocked() error {
	r.checked = time.Now()
	stamp, err := contentHashes(r.files)
	if err != nil {
		return fmt.Errorf("tls: %s: %w", r.what, err)
	}
	if r.stamp != nil && slices.Equal(stamp, r.stamp) {
		return nil
	}
	v, err := r.parse()
	if err != nil {
		return err
	}
	r.value, r.stamp = v, stamp
	return nil
}

// contentHashes are the files' contents' hashes: a rotation that keeps
// a file's modification time (cp -p, rsync -t, a coarse file system) is
// seen as well. The files are a few KiB, read once an interval, by the
// handshake that finds the interval past.
func contentHashes(files []string) ([][sha256.Size]byte, error) {
	h := make([][sha256.Size]byte, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		h[i] = sha256.Sum256(b)
	}
	return h, nil
}
