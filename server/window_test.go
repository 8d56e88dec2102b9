package server

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// TestServerSendsNoBDPPings reads every HTTP/2 frame the gRPC server wrote
// during 50 calls: with static flow-control windows it sends no PING of its
// own (grpc-go's bandwidth estimation would send one with the first request
// and then with each request that finds no PING in flight), only the ACKs
// that the client's PINGs require.
func TestServerSendsNoBDPPings(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingListener{Listener: lis}
	srv := NewGRPC(Options{Service: &stub{}, Logger: discard()}, NewHealth())
	go func() { _ = srv.Serve(rec) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := backupv1.NewBackupServiceClient(conn)
	for range 50 {
		if _, err := client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	srv.Stop()

	framer := http2.NewFramer(nil, bytes.NewReader(rec.written()))
	var pings, acks, data int
	for {
		f, err := framer.ReadFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the server's frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if f.IsAck() {
				acks++
			} else {
				pings++
			}
		case *http2.DataFrame:
			data++
		}
	}
	if data < 50 {
		t.Fatalf("read %d DATA frames for 50 calls: the recording is incomplete", data)
	}
	if pings != 0 {
		t.Errorf("the server sent %d PINGs of its own over 50 calls (and %d ACKs); want none", pings, acks)
	}
}

// recordingListener keeps what the server writes on its one connection.
type recordingListener struct {
	net.Listener
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, l: l}, nil
}

func (l *recordingListener) written() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

type recordingConn struct {
	net.Conn
	l *recordingListener
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	c.l.buf.Write(p)
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}

// TestCallsRunOnReusedGoroutines makes calls one after another and counts
// the goroutines the process starts meanwhile: the server's stream workers
// take them, so far fewer than one per call (grpc-go's default starts one
// for every call, whose stack then grows again).
func TestCallsRunOnReusedGoroutines(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewGRPC(Options{Service: &stub{}, Logger: discard()}, NewHealth())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := backupv1.NewBackupServiceClient(conn)
	call := func() {
		if _, err := client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	call() // the connection's own goroutines start here
	const calls = 200
	before := goroutinesCreated()
	for range calls {
		call()
	}
	if created := goroutinesCreated() - before; created >= calls/2 {
		t.Errorf("%d sequential calls started %d goroutines; want far fewer than one per call", calls, created)
	}
}

func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestCompressedRequestIsNotDecompressed: backupd registers no
// decompressor, so a call whose message comes gzip-compressed is refused
// by grpc-go itself (UNIMPLEMENTED), before the tap can see its encoding
// (grpc-go keeps grpc-encoding out of the metadata it hands the tap) and
// before the service: nothing is done, and, as the README says, no log
// line is written. The call is made over the wire by hand, as a client
// compressor registered in this test binary would be the server's too.
func TestCompressedRequestIsNotDecompressed(t *testing.T) {
	f := newFixture(t)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	msg, err := proto.Marshal(&backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "zipped"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(msg); err != nil || zw.Close() != nil {
		t.Fatal(err)
	}
	frame := append([]byte{1, 0, 0, 0, 0}, gz.Bytes()...) // compressed flag, then the length
	binary.BigEndian.PutUint32(frame[1:5], uint32(gz.Len()))
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // h2c, as gRPC without TLS
	tr := &http.Transport{Protocols: &protocols}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("POST", "http://"+f.conn.Target()+backupv1.BackupService_CreateBackup_FullMethodName, bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Grpc-Encoding", "gzip")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	code := cmp.Or(resp.Trailer.Get("Grpc-Status"), resp.Header.Get("Grpc-Status"))
	if code != strconv.Itoa(int(codes.Unimplemented)) {
		t.Errorf("grpc-status %q (%s); want UNIMPLEMENTED", code, cmp.Or(resp.Trailer.Get("Grpc-Message"), resp.Header.Get("Grpc-Message")))
	}
	if called := f.stub.Called(); called != nil {
		t.Errorf("the service was called with %v", called)
	}
}

// TestRequestsGRPCGoRefusesAreCountedAsAnswered: grpc-go reads a unary
// call's request before any interceptor, and answers one it will not read
// with its own error: over maxRecvMsgSize RESOURCE_EXHAUSTED, a stream
// that ends without its request or inside it INTERNAL. Nothing is done,
// and the call is logged and counted with the code its caller got, not
// as one its caller canceled.
func TestRequestsGRPCGoRefusesAreCountedAsAnswered(t *testing.T) {
	f := newFixture(t)
	method := backupv1.BackupService_CreateBackup_FullMethodName
	huge := &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: strings.Repeat("b", maxRecvMsgSize)}
	if _, err := f.client.CreateBackup(context.Background(), huge); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a request over %d bytes: %v; want grpc-go's RESOURCE_EXHAUSTED", maxRecvMsgSize, err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // h2c, as gRPC without TLS
	tr := &http.Transport{Protocols: &protocols}
	defer tr.CloseIdleConnections()
	for _, body := range [][]byte{nil, {0, 0, 0, 0, 9, 1}} { // none; 1 byte of 9
		req, err := http.NewRequest("POST", "http://"+f.conn.Target()+method, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if code := cmp.Or(resp.Trailer.Get("Grpc-Status"), resp.Header.Get("Grpc-Status")); code != strconv.Itoa(int(codes.Internal)) {
			t.Errorf("a request body of %d bytes: grpc-status %q; want INTERNAL", len(body), code)
		}
	}
	time.Sleep(3 * sweepEvery) // for a line the sweep would write
	if called := f.stub.Called(); called != nil {
		t.Errorf("the service was called with %v", called)
	}
	// In any order: the client may hear its answer before the line is
	// counted.
	want := []string{method + " Internal", method + " Internal", method + " ResourceExhausted"}
	if got := slices.Sorted(slices.Values(f.observed.Counted())); !slices.Equal(got, want) {
		t.Errorf("counted %q; want %q", got, want)
	}
	for code, n := range map[string]int{"ResourceExhausted": 1, "Internal": 2} {
		if lines := f.logs.Lines(`"level":"WARN"`, `"code":"`+code+`"`, "grpc-go refused the call's request"); len(lines) != n {
			t.Errorf("%d WARN lines of code %s saying grpc-go refused the request; want %d; log:\n%s", len(lines), code, n, f.logs.String())
		}
	}
}

// TestRequestsGRPCGoRefusesOfAnUnknownCallerAreCounted: a caller backupd
// does not know, whose deadline lies far out, is let through the tap to
// have its request read, and refused once it is (tap). Its request
// grpc-go refuses to read (over maxRecvMsgSize) is logged and counted as a
// known caller's is, with the code it got: it used to leave no trace.
func TestRequestsGRPCGoRefusesOfAnUnknownCallerAreCounted(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
			Accounts: []string{config.Any}, Operations: []string{config.Any}}})
	})
	method := backupv1.BackupService_CreateBackup_FullMethodName
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // beyond the arrival bound
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer nobody")
	huge := &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: strings.Repeat("b", maxRecvMsgSize)}
	if _, err := f.client.CreateBackup(ctx, huge); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a request over %d bytes: %v; want grpc-go's RESOURCE_EXHAUSTED", maxRecvMsgSize, err)
	}
	time.Sleep(3 * sweepEvery)
	if want := []string{method + " ResourceExhausted"}; !slices.Equal(f.observed.Counted(), want) {
		t.Errorf("counted %q; want %q", f.observed.Counted(), want)
	}
	if lines := f.logs.Lines(`"level":"WARN"`, `"code":"ResourceExhausted"`, "grpc-go refused the call's request"); len(lines) != 1 {
		t.Errorf("want one WARN line of code ResourceExhausted saying grpc-go refused the request; log:\n%s", f.logs.String())
	}
}
