// Package calltest has what the tests of backupd's two transports (packages
// server and rest) both serve and count a call with: a BackupService that
// records what reached it and a RequestObserver that records what was
// counted. It is for tests only.
package calltest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// Stub records what reached the service and answers with Err when set.
type Stub struct {
	backupv1.UnimplementedBackupServiceServer
	Mu    sync.Mutex
	Last  any
	Calls int // requests that reached the service
	Err   error
	Boom  bool // panics in the handler
	// Deadline is the last CreateBackup's context deadline, if it had one.
	Deadline time.Time
	// Entered, when not nil, is sent to (when it has room) as a GetBackup
	// of SlowARN or LingeringARN begins to wait in the handler.
	Entered chan struct{}
}

func (s *Stub) record(req any) error {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	s.Last = req
	s.Calls++
	if s.Boom {
		panic("boom")
	}
	return s.Err
}

func (s *Stub) CreateBackup(ctx context.Context, req *backupv1.CreateBackupRequest) (*backupv1.CreateBackupResponse, error) {
	dl, _ := ctx.Deadline()
	s.Mu.Lock()
	s.Deadline = dl
	s.Mu.Unlock()
	return &backupv1.CreateBackupResponse{BackupDetails: &backupv1.BackupDetails{BackupArn: ARN, BackupName: req.GetBackupName()}}, s.record(req)
}

func (s *Stub) GetBackup(ctx context.Context, req *backupv1.GetBackupRequest) (*backupv1.GetBackupResponse, error) {
	switch req.GetBackupArn() {
	case SlowARN: // waits for the caller's deadline
		s.enter()
		<-ctx.Done()
		return nil, ctx.Err()
	case LingeringARN: // and then takes a while to return, as an SDK call unwinding
		s.enter()
		<-ctx.Done()
		time.Sleep(300 * time.Millisecond)
		return nil, ctx.Err()
	}
	return &backupv1.GetBackupResponse{}, s.record(req)
}

// enter tells entered, if set and it has room, that a call is in the
// handler.
func (s *Stub) enter() {
	select {
	case s.Entered <- struct{}{}:
	default:
	}
}

// SlowARN is a backup the stub's GetBackup answers only when the call's
// context ends; LingeringARN one it answers 300 ms after that.
const (
	SlowARN      = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-510e510e"
	LingeringARN = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-11119e11"
)

func (s *Stub) ListBackups(_ context.Context, req *backupv1.ListBackupsRequest) (*backupv1.ListBackupsResponse, error) {
	return &backupv1.ListBackupsResponse{}, s.record(req)
}

func (s *Stub) DeleteBackup(_ context.Context, req *backupv1.DeleteBackupRequest) (*backupv1.DeleteBackupResponse, error) {
	return &backupv1.DeleteBackupResponse{}, s.record(req)
}

func (s *Stub) RestoreTableFromBackup(_ context.Context, req *backupv1.RestoreTableFromBackupRequest) (*backupv1.RestoreTableFromBackupResponse, error) {
	return &backupv1.RestoreTableFromBackupResponse{}, s.record(req)
}

// Observed records what the interceptor told its RequestObserver.
type Observed struct {
	Mu       sync.Mutex
	Calls    []string
	Reasons  []string // each call's reason, in the order of calls
	inFlight int
}

func (o *Observed) InFlight(delta int) {
	o.Mu.Lock()
	defer o.Mu.Unlock()
	o.inFlight += delta
}

// Handling is how many requests are in their handler.
func (o *Observed) Handling() int {
	o.Mu.Lock()
	defer o.Mu.Unlock()
	return o.inFlight
}

func (o *Observed) ObserveRequest(method string, code codes.Code, reason string, _ time.Duration) {
	o.Mu.Lock()
	defer o.Mu.Unlock()
	o.Calls = append(o.Calls, method+" "+code.String())
	o.Reasons = append(o.Reasons, reason)
}

// Counted returns what was counted so far, as "method code".
func (o *Observed) Counted() []string {
	o.Mu.Lock()
	defer o.Mu.Unlock()
	return slices.Clone(o.Calls)
}

// Take is Counted, forgetting what it returns.
func (o *Observed) Take() []string {
	o.Mu.Lock()
	defer o.Mu.Unlock()
	calls := o.Calls
	o.Calls = nil
	return calls
}

// Called reports the request that reached the stub service, if any.
func (s *Stub) Called() any {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	return s.Last
}

// CompactJSON removes the spaces protojson puts after some colons and
// commas, or not, depending on the binary; b unchanged when not JSON.
func CompactJSON(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}

// Do sends a request of method to url and returns its answer,
// its body read and compacted (CompactJSON).
func Do(t testing.TB, method, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, CompactJSON(b)
}

// ARN is the backup the Stub's CreateBackup makes.
const ARN = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"

// DialRaw opens a TCP connection to addr for a hand-written request, closed
// when the test ends, with a deadline so that a missing answer fails the
// test rather than hanging it.
func DialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}
