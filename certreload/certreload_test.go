package certreload

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/backupd/backupd/testenv"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestTLSConfigErrors(t *testing.T) {
	files := testenv.SelfSignedTLS(t)
	expired := testenv.SelfSignedTLSValid(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	for _, tt := range []struct{ name, cert, key, ca, want string }{
		{"no certificate file", "/nonexistent.crt", files.KeyFile, "", "nonexistent.crt"},
		{"a certificate for a key", files.CertFile, files.CertFile, "", "load cert_file and key_file"},
		{"no client CA file", files.CertFile, files.KeyFile, "/nonexistent-ca.pem", "client_ca_file"},
		{"a key for a client CA", files.CertFile, files.KeyFile, files.KeyFile, "client_ca_file holds no PEM certificate"},
		{"an expired certificate", expired.CertFile, expired.KeyFile, "", "cert_file's certificate expired at"},
		{"an expired client CA", files.CertFile, files.KeyFile, expired.CertFile, "client_ca_file's certificates have all expired, the last at"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := TLSConfig(tt.cert, tt.key, tt.ca, discard()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("TLSConfig(%q, %q, %q): %v; want an error saying %q", tt.cert, tt.key, tt.ca, err, tt.want)
			}
		})
	}
}

// TestCAs: a CA file is taken when one of its certificates is valid now,
// which a rotation needs (the old CA beside its successor), and refused
// when none is: no client certificate would verify.
func TestCAs(t *testing.T) {
	now := time.Now()
	valid := testenv.SelfSignedTLS(t)
	expiredAt := now.Add(-time.Hour)
	expired := testenv.SelfSignedTLSValid(t, now.Add(-2*time.Hour), expiredAt)
	future := testenv.SelfSignedTLSValid(t, now.Add(time.Hour), now.Add(2*time.Hour))
	read := func(f testenv.TLSFiles) []byte {
		b, err := os.ReadFile(f.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tt := range []struct {
		name string
		pem  []byte
		want string // the error; "" for none
	}{
		{"a valid CA", read(valid), ""},
		{"an expired CA beside a valid one", append(read(expired), read(valid)...), ""},
		{"an expired CA alone", read(expired), "certificates have all expired, the last at " + expiredAt.UTC().Format(time.RFC3339)},
		{"a CA not valid yet", read(future), "holds no certificate valid yet"},
		{"no certificate", []byte("not a certificate"), "holds no PEM certificate"},
		// x509.CertPool.AppendCertsFromPEM skips a block with headers, as
		// the config's check at start does.
		{"a valid CA in a block with headers", bytes.Replace(read(valid), []byte("-----\n"), []byte("-----\nProc-Type: 4,ENCRYPTED\n\n"), 1), "holds no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := CAs(tt.pem, now)
			switch {
			case tt.want == "" && (err != nil || pool == nil):
				t.Errorf("CAs: %v, %v; want a pool", pool, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CAs: %v; want an error saying %q", err, tt.want)
			}
		})
	}
}

// serving returns a check that cfg serves the certificate in files, as
// they were when it was asked for the check: rotate copies over them.
func serving(t *testing.T, cfg *tls.Config) func(files testenv.TLSFiles) func() error {
	t.Helper()
	return func(files testenv.TLSFiles) func() error {
		want, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return func() error {
			got, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
			if err != nil {
				return err
			}
			if !bytes.Equal(got.Certificate[0], want.Certificate[0]) {
				return errors.New("another certificate is served")
			}
			return nil
		}
	}
}

// TestCertificateRotates: new certificate files are served from the next
// handshake after the check interval, without a restart, and the
// rotation is logged once, so that whoever watches a rotation (or waits
// for one after an expiry's ERROR) sees it taken.
func TestCertificateRotates(t *testing.T) { synctest.Test(t, testCertificateRotates) }

func testCertificateRotates(t *testing.T) {
	first := testenv.SelfSignedTLS(t)
	const interval = 2 * time.Second
	cfg, logs := logged(t, first, interval)
	serves := serving(t, cfg)
	first1 := serves(first)
	if err := first1(); err != nil {
		t.Fatalf("first certificate: %v", err)
	}
	second := testenv.SelfSignedTLS(t)
	second1 := serves(second)
	rotate(t, second, first, time.Now().Add(time.Minute)) // a modification time surely different
	if err := first1(); err != nil {
		t.Fatalf("the old certificate was not served until the check interval passed: %v", err)
	}
	time.Sleep(interval + 100*time.Millisecond)
	if err := second1(); err != nil {
		t.Errorf("rotated certificate: %v", err)
	}
	if err := first1(); err == nil {
		t.Error("the old certificate is still served")
	}
	time.Sleep(interval + 100*time.Millisecond)
	if err := second1(); err != nil {
		t.Errorf("rotated certificate, later: %v", err)
	}
	if n := strings.Count(logs.String(), `"level":"INFO","msg":"tls: the certificate files rotated`); n != 1 {
		t.Errorf("%d INFO lines for the rotation, want 1:\n%s", n, logs.String())
	}
}

// TestRotationKeepingTheModificationTimeIsSeen: files copied over with
// the old ones' modification time (cp -p, rsync -t) are read again too.
func TestRotationKeepingTheModificationTimeIsSeen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		first := testenv.SelfSignedTLS(t)
		const interval = 200 * time.Millisecond
		cfg, err := tlsConfig(first.CertFile, first.KeyFile, "", interval, discard())
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(first.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		second := testenv.SelfSignedTLS(t)
		second1 := serving(t, cfg)(second)
		rotate(t, second, first, fi.ModTime())
		time.Sleep(interval + 50*time.Millisecond)
		if err := second1(); err != nil {
			t.Errorf("files rotated with the old modification time: %v", err)
		}
	})
}

// A rotation that leaves files that do not load keeps the previous
// certificate in service and says so once, at ERROR; the next good pair is
// served again.
func TestBrokenRotationIsLogged(t *testing.T) { synctest.Test(t, testBrokenRotationIsLogged) }

func testBrokenRotationIsLogged(t *testing.T) {
	first := testenv.SelfSignedTLS(t)
	const interval = 200 * time.Millisecond
	cfg, logs := logged(t, first, interval)
	serves := serving(t, cfg)
	first1 := serves(first)
	later := time.Now().Add(time.Minute)
	if err := os.WriteFile(first.CertFile, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(first.CertFile, later, later); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		time.Sleep(interval + 50*time.Millisecond)
		if err := first1(); err != nil {
			t.Fatalf("the previous certificate is not served: %v", err)
		}
	}
	second := testenv.SelfSignedTLS(t)
	second1 := serves(second)
	rotate(t, second, first, later.Add(time.Minute))
	time.Sleep(interval + 50*time.Millisecond)
	if err := second1(); err != nil {
		t.Errorf("the next good pair is not served: %v", err)
	}
	buf := logs.String()
	if n := strings.Count(buf, `"level":"ERROR","msg":"tls: the certificate files changed but cannot be loaded`); n != 1 {
		t.Errorf("%d ERROR lines, want 1:\n%s", n, buf)
	}
	if !strings.Contains(buf, `"level":"INFO","msg":"tls: the certificate files rotated: in service for new connections"`) {
		t.Errorf("the recovery is not logged as the rotation it is:\n%s", buf)
	}
}

// A rotation to a certificate outside its validity period keeps the
// previous one in service, and says so; one not yet valid is served once
// its period begins, the files unchanged.
func TestRotationOutsideValidityIsKept(t *testing.T) {
	synctest.Test(t, testRotationOutsideValidityIsKept)
}

func testRotationOutsideValidityIsKept(t *testing.T) {
	first := testenv.SelfSignedTLS(t)
	const interval = 200 * time.Millisecond
	cfg, logs := logged(t, first, interval)
	serves := serving(t, cfg)
	first1 := serves(first)
	expired := testenv.SelfSignedTLSValid(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	rotate(t, expired, first, time.Now().Add(time.Minute))
	time.Sleep(interval + 50*time.Millisecond)
	if err := first1(); err != nil {
		t.Fatalf("an expired certificate replaced the good one: %v", err)
	}
	ahead := testenv.SelfSignedTLSValid(t, time.Now().Add(time.Second), time.Now().Add(time.Hour))
	ahead1 := serves(ahead)
	rotate(t, ahead, first, time.Now().Add(2*time.Minute))
	time.Sleep(interval + 50*time.Millisecond)
	if err := first1(); err != nil {
		t.Fatalf("a certificate not yet valid replaced the good one: %v", err)
	}
	time.Sleep(time.Second)
	if err := ahead1(); err != nil {
		t.Errorf("the certificate is not served once valid: %v", err)
	}
	for _, want := range []string{"cert_file's certificate expired at", "cert_file's certificate is not valid before"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
}

// TestExpiryInServiceIsLogged: a certificate that expires in service, its
// files unchanged, is said to at ERROR once, at the first check after;
// every client refuses it, and a rotation is the cure. A valid one
// rotated in is served, and ends it.
func TestExpiryInServiceIsLogged(t *testing.T) { synctest.Test(t, testExpiryInServiceIsLogged) }

func testExpiryInServiceIsLogged(t *testing.T) {
	short := testenv.SelfSignedTLSValid(t, time.Now().Add(-time.Minute), time.Now().Add(time.Second))
	const interval = 200 * time.Millisecond
	cfg, logs := logged(t, short, interval)
	serves := serving(t, cfg)
	short1 := serves(short)
	const expired = `"level":"ERROR","msg":"tls: the certificate in service expired at `
	for range 3 {
		time.Sleep(interval + 50*time.Millisecond)
		if err := short1(); err != nil {
			t.Fatalf("the certificate in service: %v", err)
		}
	}
	if strings.Contains(logs.String(), expired) {
		t.Fatalf("a certificate still valid is said to have expired:\n%s", logs.String())
	}
	for range 4 {
		time.Sleep(interval + 50*time.Millisecond)
		if err := short1(); err != nil {
			t.Fatalf("the certificate in service, expired, with no other to serve: %v", err)
		}
	}
	if n := strings.Count(logs.String(), expired); n != 1 {
		t.Errorf("%d ERROR lines of the expiry, want 1:\n%s", n, logs.String())
	}
	next := testenv.SelfSignedTLS(t)
	next1 := serves(next)
	rotate(t, next, short, time.Now().Add(time.Minute))
	time.Sleep(interval + 50*time.Millisecond)
	if err := next1(); err != nil {
		t.Errorf("the rotated certificate is not served: %v", err)
	}
	time.Sleep(interval + 50*time.Millisecond)
	_ = next1()
	if n := strings.Count(logs.String(), expired); n != 1 {
		t.Errorf("%d ERROR lines of the expiry after a rotation, want 1:\n%s", n, logs.String())
	}
}

// logged is the TLS configuration of files, checked every interval, and
// the JSON log it writes.
func logged(t *testing.T, files testenv.TLSFiles, interval time.Duration) (*tls.Config, *testenv.Buffer) {
	t.Helper()
	logs := &testenv.Buffer{}
	cfg, err := tlsConfig(files.CertFile, files.KeyFile, "", interval, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, logs
}

// rotate copies the certificate and key of from over those of to, with
// modification time mtime.
func rotate(t *testing.T, from, to testenv.TLSFiles, mtime time.Time) {
	t.Helper()
	copyFile(t, from.CertFile, to.CertFile, mtime)
	copyFile(t, from.KeyFile, to.KeyFile, mtime)
}

// TestClientCARotates: a new client_ca_file verifies clients from the next
// handshake after the check interval; one that does not load keeps the
// previous CAs, and says so once.
func TestClientCARotates(t *testing.T) { synctest.Test(t, testClientCARotates) }

func testClientCARotates(t *testing.T) {
	server, first, second := testenv.SelfSignedTLS(t), testenv.SelfSignedTLS(t), testenv.SelfSignedTLS(t)
	const interval = 2 * time.Second
	logs := &testenv.Buffer{}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	copyFile(t, first.CertFile, caFile, time.Now()) // each test certificate signs itself
	cfg, err := tlsConfig(server.CertFile, server.KeyFile, caFile, interval, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	verifies := func(client testenv.TLSFiles) bool {
		t.Helper()
		c, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil || c.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Fatalf("config for a client: %v, %v", c, err)
		}
		leaf := certificate(t, client)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: c.ClientCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err == nil
	}
	if !verifies(first) || verifies(second) {
		t.Fatal("the first CA does not verify its clients alone")
	}
	// Should a handshake go without the per-client config, the outer one
	// verifies clients against the same CAs, not the system's.
	if c, _ := cfg.GetConfigForClient(&tls.ClientHelloInfo{}); cfg.ClientAuth != tls.RequireAndVerifyClientCert ||
		cfg.ClientCAs == nil || !cfg.ClientCAs.Equal(c.ClientCAs) {
		t.Error("the outer config does not verify clients against the CA file")
	}
	copyFile(t, second.CertFile, caFile, time.Now().Add(time.Minute))
	if !verifies(first) {
		t.Fatal("the new CA was taken before the check interval passed")
	}
	time.Sleep(interval)
	if verifies(first) || !verifies(second) {
		t.Error("the rotated CA does not verify clients in the old one's place")
	}
	if err := os.WriteFile(caFile, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(caFile, time.Now().Add(2*time.Minute), time.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(interval)
	if !verifies(second) {
		t.Error("a CA file that does not load replaced the previous CAs")
	}
	if n := strings.Count(logs.String(), `"level":"ERROR","msg":"tls: client_ca_file changed but cannot be loaded; the previous CAs still verify clients"`); n != 1 {
		t.Errorf("%d ERROR lines, want 1:\n%s", n, logs.String())
	}
}

func certificate(t *testing.T, files testenv.TLSFiles) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// copyFile copies from over to, with modification time mtime.
func copyFile(t *testing.T, from, to string, mtime time.Time) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(to, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// NotAfter follows the certificate in service through a rotation; a
// config without one has none.
func TestNotAfter(t *testing.T) { synctest.Test(t, testNotAfter) }

func testNotAfter(t *testing.T) {
	now := time.Now()
	firstEnd, secondEnd := now.Add(2*time.Hour).Truncate(time.Second), now.Add(5*time.Hour).Truncate(time.Second)
	first := testenv.SelfSignedTLSValid(t, now.Add(-time.Hour), firstEnd)
	const interval = 2 * time.Second
	cfg, err := tlsConfig(first.CertFile, first.KeyFile, "", interval, discard())
	if err != nil {
		t.Fatal(err)
	}
	if got := NotAfter(cfg); !got.Equal(firstEnd) {
		t.Errorf("NotAfter = %v, want %v", got, firstEnd)
	}
	rotate(t, testenv.SelfSignedTLSValid(t, now.Add(-time.Hour), secondEnd), first, time.Now().Add(time.Minute))
	time.Sleep(interval + 100*time.Millisecond)
	if got := NotAfter(cfg); !got.Equal(secondEnd) {
		t.Errorf("NotAfter after the rotation = %v, want %v", got, secondEnd)
	}
	if got := NotAfter(nil); !got.IsZero() {
		t.Errorf("NotAfter(nil) = %v", got)
	}
}

// TestClientCAExpiryInServiceIsLogged: a client_ca_file whose CAs all
// expire in service, the file unchanged, refuses every client from then
// on, as a certificate expired in service does: it is said at ERROR once,
// and a rotation ends it.
func TestClientCAExpiryInServiceIsLogged(t *testing.T) {
	synctest.Test(t, testClientCAExpiryInServiceIsLogged)
}

func testClientCAExpiryInServiceIsLogged(t *testing.T) {
	server := testenv.SelfSignedTLS(t)
	short := testenv.SelfSignedTLSValid(t, time.Now().Add(-time.Minute), time.Now().Add(time.Second))
	const interval = 200 * time.Millisecond
	logs := &testenv.Buffer{}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	copyFile(t, short.CertFile, caFile, time.Now())
	cfg, err := tlsConfig(server.CertFile, server.KeyFile, caFile, interval, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		if _, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{}); err != nil {
			t.Fatal(err)
		}
	}
	const expired = `"level":"ERROR","msg":"tls: client_ca_file's certificates in service have all expired, the last at `
	for range 3 {
		time.Sleep(interval + 50*time.Millisecond)
		check()
	}
	if strings.Contains(logs.String(), expired) {
		t.Fatalf("a CA still valid is said to have expired:\n%s", logs.String())
	}
	for range 4 {
		time.Sleep(interval + 50*time.Millisecond)
		check()
	}
	if n := strings.Count(logs.String(), expired); n != 1 {
		t.Errorf("%d ERROR lines of the CAs' expiry, want 1:\n%s", n, logs.String())
	}
	copyFile(t, server.CertFile, caFile, time.Now().Add(time.Minute))
	for range 3 {
		time.Sleep(interval + 50*time.Millisecond)
		check()
	}
	if n := strings.Count(logs.String(), expired); n != 1 {
		t.Errorf("%d ERROR lines of the CAs' expiry after a rotation, want 1:\n%s", n, logs.String())
	}
}

// TestRotationAfterAHalfWrittenOneIsLogged: a rotation caught half
// written (the new certificate beside the old key) is logged at ERROR,
// the old pair kept; once the key follows, the new pair goes into service
// and that is said as a rotation, as docs/operations.md names it, not
// only as files that "can be loaded again", which is also what putting
// back the old files says.
func TestRotationAfterAHalfWrittenOneIsLogged(t *testing.T) {
	synctest.Test(t, testRotationAfterAHalfWrittenOneIsLogged)
}

func testRotationAfterAHalfWrittenOneIsLogged(t *testing.T) {
	first := testenv.SelfSignedTLS(t)
	const interval = 2 * time.Second
	cfg, logs := logged(t, first, interval)
	serves := serving(t, cfg)
	second := testenv.SelfSignedTLS(t)
	second1 := serves(second)
	copyFile(t, second.CertFile, first.CertFile, time.Now().Add(time.Minute)) // the key not yet
	time.Sleep(interval + 100*time.Millisecond)
	if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{}); err != nil {
		t.Fatal(err)
	}
	copyFile(t, second.KeyFile, first.KeyFile, time.Now().Add(time.Minute))
	time.Sleep(interval + 100*time.Millisecond)
	if err := second1(); err != nil {
		t.Fatalf("rotated certificate: %v", err)
	}
	if n := strings.Count(logs.String(), `"level":"INFO","msg":"tls: the certificate files rotated`); n != 1 {
		t.Errorf("%d INFO lines for the rotation, want 1:\n%s", n, logs.String())
	}
}
