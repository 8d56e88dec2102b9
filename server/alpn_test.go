package server

import (
	"crypto/tls"
	"log/slog"
	"net"
	"testing"

	"github.com/backupd/backupd/certreload"
	"github.com/backupd/backupd/testenv"
)

// TestGRPCListenerOffersOnlyH2WithClientCAs: with a client_ca_file, the
// gRPC listener still agrees to HTTP/2 alone, as without one: a client
// that offers only http/1.1 must not be told the listener speaks it.
func TestGRPCListenerOffersOnlyH2WithClientCAs(t *testing.T) {
	files := testenv.SelfSignedTLS(t) // a CA that may sign clients too
	for _, clientCA := range []string{"", files.CertFile} {
		cfg, err := certreload.TLSConfig(files.CertFile, files.KeyFile, clientCA, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := NewGRPC(Options{Service: &stub{}, Logger: discard(), TLS: cfg}, NewHealth())
		go func() { _ = srv.Serve(lis) }()
		for _, offer := range [][]string{{"http/1.1"}, {"h2", "http/1.1"}} {
			conn, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: files.Pool,
				Certificates: []tls.Certificate{files.Certificate(t)}, NextProtos: offer})
			if err != nil {
				t.Fatalf("client_ca_file %q, offer %v: %v", clientCA, offer, err)
			}
			got := conn.ConnectionState().NegotiatedProtocol
			conn.Close()
			if got == "http/1.1" || (len(offer) == 2 && got != "h2") {
				t.Errorf("client_ca_file %q, a client offering %v: the gRPC listener agreed to %q", clientCA, offer, got)
			}
		}
		srv.Stop()
	}
}
