package awsbase

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2ResetOnce is a TLS server that offers HTTP/2: over HTTP/2 it reads
// each request whole (as a server that acted on it would) and answers the
// first with RST_STREAM PROTOCOL_ERROR, the later ones with 200 and an
// empty JSON body; over HTTP/1.1 it answers each with 200. It counts the
// requests it read.
func h2ResetOnce(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var got atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte("{}"))
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	srv.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
		"h2": func(_ *http.Server, c *tls.Conn, _ http.Handler) {
			defer c.Close()
			preface := make([]byte, len(http2.ClientPreface))
			if _, err := io.ReadFull(c, preface); err != nil {
				return
			}
			fr := http2.NewFramer(c, c)
			_ = fr.WriteSettings()
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					return
				}
				switch f := f.(type) {
				case *http2.SettingsFrame:
					if !f.IsAck() {
						_ = fr.WriteSettingsAck()
					}
				case *http2.DataFrame:
					if !f.StreamEnded() {
						continue
					}
					if got.Add(1) == 1 {
						_ = fr.WriteRSTStream(f.StreamID, http2.ErrCodeProtocol)
						continue
					}
					var hb bytes.Buffer
					enc := hpack.NewEncoder(&hb)
					_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
					_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/x-amz-json-1.0"})
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true})
					_ = fr.WriteData(f.StreamID, true, []byte("{}"))
				}
			}
		},
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &got
}

type opaqueBody struct{ io.Reader }

func (opaqueBody) Close() error { return nil }

// TestH2ResetAfterTheBodyIsNotResent: one call through the pooled client
// reaches an endpoint that offers HTTP/2 once, whatever it answers. Over
// HTTP/2, with the GetBody inMemoryBodies sets, net/http resent a request
// written whole that the peer reset with PROTOCOL_ERROR: a CreateBackup
// resent within one attempt, on one turn of the rate limit, and answered
// as one success though DynamoDB may have made two backups.
func TestH2ResetAfterTheBodyIsNotResent(t *testing.T) {
	srv, got := h2ResetOnce(t)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c := PooledHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}))
	body := `{"TableName":"Orders","BackupName":"once"}`
	// A client that speaks HTTP/1.1 on a connection that negotiated h2
	// would wait for an answer forever.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Opaque, as the SDK's body is: PooledHTTPClient gives it the GetBody.
	req.Body, req.ContentLength = opaqueBody{strings.NewReader(body)}, int64(len(body))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.CreateBackup")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("the call failed: %v", err)
	}
	resp.Body.Close()
	if n := got.Load(); n != 1 {
		t.Errorf("one call reached the server %d times", n)
	}
	if resp.ProtoMajor != 1 {
		t.Errorf("the call went over %s, want HTTP/1.1", resp.Proto)
	}
}
