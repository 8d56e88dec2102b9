package sandbox_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/backupd/backupd/sandbox"
)

// BenchmarkCreateBackup measures CreateBackup against the fake.
//
//   - sdk: the real SDK client over loopback HTTP with assumed-role
//     credentials from a credentials cache, as backupd calls DynamoDB. The
//     numbers include the SDK, net/http on both ends and the fake.
//   - sdk-parallel: the same from GOMAXPROCS goroutines.
//   - handler: the fake's own cost, ServeHTTP on a pre-signed request:
//     signature verification, decoding, the store and the response.
func BenchmarkCreateBackup(b *testing.B) {
	in := &dynamodb.CreateBackupInput{TableName: aws.String("Orders"), BackupName: aws.String("bench")}

	b.Run("sdk", func(b *testing.B) {
		e := start(b, sandbox.Options{Accounts: sandbox.DemoAccounts()})
		db := e.in("111111111111")
		if _, err := db.CreateBackup(b.Context(), in); err != nil { // warm the credentials cache
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := db.CreateBackup(b.Context(), in); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("sdk-parallel", func(b *testing.B) {
		e := start(b, sandbox.Options{Accounts: sandbox.DemoAccounts()})
		db := e.in("111111111111")
		if _, err := db.CreateBackup(b.Context(), in); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := db.CreateBackup(b.Context(), in); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	b.Run("handler", func(b *testing.B) {
		e := start(b, sandbox.Options{Accounts: sandbox.DemoAccounts()})
		creds, err := e.assumed("111111111111", "").Retrieve(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		body := []byte(`{"BackupName":"bench","TableName":"Orders"}`)
		req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, "http://127.0.0.1:8000/", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810.CreateBackup")
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		req.ContentLength = int64(len(body))
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(b.Context(), creds, req, hex.EncodeToString(sum[:]), "dynamodb", "us-east-1", time.Now()); err != nil {
			b.Fatal(err)
		}
		w := &discardWriter{header: http.Header{}}
		r := bytes.NewReader(body)
		req.Body = io.NopCloser(r)
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(body)
			clear(w.header)
			e.fake.ServeHTTP(w, req)
			if w.status != http.StatusOK {
				b.Fatalf("status %d", w.status)
			}
		}
	})
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
