// Package certreload serves TLS from certificate files that operators
// rotate in place: the files are read again when they change, so a renewed
// certificate is served without a restart, and a rotation that leaves
// files that do not load keeps the previous certificate in service.
package certreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckInterval is how often a handshake looks whether the certificate
// files changed.
const certCheckInterval = 10 * time.Second

// TLSConfig reads the listeners' certificate and key. With clientCAFile set,
// every client must present a certificate signed by that CA (mutual TLS).
// The certificate is read again when its files change, so a rotated
// certificate is served from the next handshakes on, without a restart.
// A rotated pair that fails to load is logged, at ERROR, and the previous
// certificate stays in service.
func TLSConfig(certFile, keyFile, clientCAFile string, logger *slog.Logger) (*tls.Config, error) {
	return tlsConfig(certFile, keyFile, clientCAFile, certCheckInterval, logger)
}

func tlsConfig(certFile, keyFile, clientCAFile string, interval time.Duration, logger *slog.Logger) (*tls.Config, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, interval: interval, log: logger}
	if err := r.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{GetCertificate: r.certificate, MinVersion: tls.VersionTLS12}
	if clientCAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("tls: client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("tls: client_ca_file holds no PEM certificate")
	}
	cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	return cfg, nil
}

// certReloader serves the certificate in certFile and keyFile, reading them
// again when their modification times change. A pair that fails to load
// (half written, say) leaves the previous certificate in service.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time // the files' modification times when cert was read
	checked time.Time
	failed  string // the last reload's error, logged once
}

func (r *certReloader) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= r.interval {
		r.reloadLocked()
	}
	return r.cert, nil
}

// reloadLocked reads the files again if they changed. On failure the
// previous certificate stays, and operators are told once per error, so
// that a broken rotation is seen before the old certificate expires.
func (r *certReloader) reloadLocked() {
	err := r.loadLocked()
	switch {
	case err != nil && err.Error() != r.failed:
		r.failed = err.Error()
		r.log.Error("tls: the certificate files changed but cannot be loaded; the previous certificate is still served",
			slog.String("error", r.failed))
	case err == nil && r.failed != "":
		r.failed = ""
		r.log.Info("tls: the certificate files load again")
	}
}

func (r *certReloader) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *certReloader) loadLocked() error {
	r.checked = time.Now()
	stamp, err := modTimes(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if r.cert != nil && stamp == r.stamp {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: load cert_file and key_file: %w", err)
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

func modTimes(certFile, keyFile string) ([2]time.Time, error) {
	var t [2]time.Time
	for i, f := range []string{certFile, keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return t, err
		}
		t[i] = fi.ModTime()
	}
	return t, nil
}
