package server

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/rest"
	"github.com/backupd/backupd/rpcerror"
)

// rawCodec sends a test's bytes as the request, whatever they hold.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestUndecodableRequest shows a gRPC request that cannot be decoded
// answered INVALID_ARGUMENT MALFORMED_REQUEST, through the interceptor:
// logged and counted, and never given to the service. grpc-go alone
// answers INTERNAL before any interceptor runs.
func TestUndecodableRequest(t *testing.T) {
	str := func(field byte, s string) []byte { return append([]byte{field<<3 | 2, byte(len(s))}, s...) }
	tests := []struct {
		name   string
		msg    []byte
		want   string // a part of the message
		reason string
		field  string // the field violation's, if one is wanted
	}{
		{"invalid UTF-8 in backup_name", append(append(str(1, "111111111111"), str(3, "Orders")...), str(4, "ab\xff\xfecd")...),
			"backup_name must be valid UTF-8", "INVALID_ARGUMENT", "backup_name"},
		{"truncated", []byte{0x0a, 0x20, 'x'}, "could not be decoded as backup.v1.CreateBackupRequest (cannot parse invalid wire-format data); send it with a client generated",
			"MALFORMED_REQUEST", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var out []byte
			err := f.conn.Invoke(context.Background(), backupv1.BackupService_CreateBackup_FullMethodName, tt.msg, &out,
				grpc.ForceCodec(rawCodec{}))
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tt.want) {
				t.Fatalf("status %v, want InvalidArgument naming %q", st, tt.want)
			}
			if info, ok := st.Details()[0].(*errdetails.ErrorInfo); !ok || info.GetReason() != tt.reason {
				t.Errorf("details %v, want ErrorInfo %s", st.Details(), tt.reason)
			}
			if tt.field != "" {
				if br, ok := st.Details()[len(st.Details())-1].(*errdetails.BadRequest); !ok || len(br.GetFieldViolations()) != 1 ||
					br.GetFieldViolations()[0].GetField() != tt.field {
					t.Errorf("details %v, want a violation of %s", st.Details(), tt.field)
				}
			}
			if last := f.stub.Called(); last != nil {
				t.Errorf("the service was called with %v", last)
			}
			counted := f.observed.Counted()
			if want := []string{backupv1.BackupService_CreateBackup_FullMethodName + " InvalidArgument"}; !slices.Equal(counted, want) {
				t.Errorf("counted %q, want %q", counted, want)
			}
			if logs := f.logs.String(); !strings.Contains(logs, `"code":"InvalidArgument"`) {
				t.Errorf("no log line: %s", logs)
			}
		})
	}
}

// TestInvalidUTF8BesideOtherViolations: a gRPC request with strings
// that are not UTF-8 is also told what else is wrong with its other
// fields, as the same request over REST is: one violation per bad field.
func TestInvalidUTF8BesideOtherViolations(t *testing.T) {
	str := func(field byte, s string) []byte { return append([]byte{field<<3 | 2, byte(len(s))}, s...) }
	msg := slices.Concat(str(1, "abc"), str(3, "\xffOrders"), str(4, "a"), str(5, "\xc3"))
	f := newFixture(t)
	var out []byte
	err := f.conn.Invoke(context.Background(), backupv1.BackupService_CreateBackup_FullMethodName, msg, &out, grpc.ForceCodec(rawCodec{}))
	st := status.Convert(err)
	fields := violatedFields(st)
	if want := []string{"table_name", "request_id", "account_id", "backup_name"}; st.Code() != codes.InvalidArgument || !slices.Equal(fields, want) {
		t.Errorf("%v with violations of %q; want INVALID_ARGUMENT with %q", st.Code(), fields, want)
	}
	if last := f.stub.Called(); last != nil {
		t.Errorf("the service was called with %v", last)
	}

	// A message field that is not a list, sent twice, is merged by
	// protobuf, whose lists inside it then count otherwise than the
	// walk's: only the strings that are not UTF-8 are named.
	gsi := func(name string) []byte {
		b, _ := proto.Marshal(&backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: name}}})
		return protowire.AppendBytes(protowire.AppendTag(nil, 7, protowire.BytesType), b)
	}
	twice := slices.Concat(str(1, "arn"), str(2, "Copy"), gsi("ByA"), gsi("\xff\xfeZZ"))
	err = f.conn.Invoke(context.Background(), backupv1.BackupService_RestoreTableFromBackup_FullMethodName, twice, &out, grpc.ForceCodec(rawCodec{}))
	fields = violatedFields(status.Convert(err))
	if want := []string{"global_secondary_index_override.indexes[0].index_name"}; !slices.Equal(fields, want) {
		t.Errorf("a message field sent twice: violations of %q; want only %q", fields, want)
	}
}

// violatedFields are the fields a gRPC status's BadRequest names, in order.
func violatedFields(st *status.Status) []string {
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

// TestInvalidUTF8NamesTheField: invalid UTF-8 in nested and repeated
// string fields is named by the field's path, as REST names it; a nested
// message that is not well formed is passed over, and the walk goes on
// beside it.
func TestInvalidUTF8NamesTheField(t *testing.T) {
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	keyAttr := func(name string) []byte { return field(nil, 1, []byte(name)) }
	index0 := field(nil, 1, []byte("ok"))
	index1 := field(nil, 1, []byte("gsi\xff"))
	index1 = field(index1, 2, []byte{0x0a, 0x05, 'a'}) // key_schema[0]: a string of 5 bytes that holds 1
	index1 = field(index1, 2, keyAttr("b\xff"))        // key_schema[1]
	selection := field(field(nil, 1, index0), 1, index1)
	b := field(field(field(nil, 1, []byte("arn")), 2, []byte("Copy\xff")), 7, selection)
	if proto.Unmarshal(b, &backupv1.RestoreTableFromBackupRequest{}) == nil {
		t.Fatal("protobuf took the request")
	}
	w := utf8Walk{limit: rpcerror.MaxViolations}
	w.walk((&backupv1.RestoreTableFromBackupRequest{}).ProtoReflect().Descriptor(), b)
	var got []string
	for _, v := range w.vs {
		got = append(got, v.Field)
	}
	want := []string{"target_table_name", "global_secondary_index_override.indexes[1].index_name",
		"global_secondary_index_override.indexes[1].key_schema[1].attribute_name"}
	if !slices.Equal(got, want) {
		t.Errorf("violations of %q, want %q", got, want)
	}
}

// TestInvalidUTF8NamesTheFirstOnly: a request full of invalid strings is
// answered with as many violations as an error carries and a count of the
// rest: the codec reads it before the caller is authenticated.
func TestInvalidUTF8NamesTheFirstOnly(t *testing.T) {
	const n = 5000
	req := &backupv1.RestoreTableFromBackupRequest{GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{}}
	for range n {
		req.GlobalSecondaryIndexOverride.Indexes = append(req.GlobalSecondaryIndexOverride.Indexes, &backupv1.GlobalSecondaryIndex{IndexName: "\x7f\x7f\x7f"})
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte("\x7f\x7f\x7f"), []byte("\xff\xff\xff")) // no tag or length is 0x7f here
	c := newDeferringCodec()
	got := &backupv1.RestoreTableFromBackupRequest{}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
		t.Fatalf("Unmarshal: %v; want the status kept for the interceptor", err)
	}
	st := status.Convert(c.take(got))
	var vs []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			vs = br.GetFieldViolations()
		}
	}
	if st.Code() != codes.InvalidArgument || len(vs) == 0 || len(vs) > rpcerror.MaxViolations {
		t.Fatalf("status %v with %d violations; want INVALID_ARGUMENT with at most %d", st, len(vs), rpcerror.MaxViolations)
	}
	for i, v := range vs {
		if want := fmt.Sprintf("global_secondary_index_override.indexes[%d].index_name", i); v.GetField() != want {
			t.Errorf("violation %d of %s; want the first ones in order, %s", i, v.GetField(), want)
		}
	}
	listed := strings.Count(st.Message(), "must be valid UTF-8")
	if !strings.HasSuffix(st.Message(), fmt.Sprintf("; and %d more", n-listed)) {
		t.Errorf("message %q lists %d; want the other %d counted", st.Message(), listed, n-listed)
	}
}

// TestWalkedFieldsCoverTheProto: the UTF-8 walk looks into every field a
// request can hold, nested ones too; a field numbered past it would be
// passed over.
func TestWalkedFieldsCoverTheProto(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var check func(md protoreflect.MessageDescriptor)
	check = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		fields := md.Fields()
		for j := range fields.Len() {
			f := fields.Get(j)
			if int(f.Number()) >= walkedFields {
				t.Errorf("%s is numbered %d; the walk looks at fields below %d", f.FullName(), f.Number(), walkedFields)
			}
			if f.Kind() == protoreflect.MessageKind {
				check(f.Message())
			}
		}
	}
	methods := backupv1.File_backup_v1_backup_service_proto.Services().ByName("BackupService").Methods()
	for i := range methods.Len() {
		check(methods.Get(i).Input())
	}
	if len(seen) < methods.Len() {
		t.Errorf("%d messages checked, want every request's", len(seen))
	}
}

// TestUnknownMethod shows a call to a method backupd does not serve
// answered UNIMPLEMENTED with an ErrorInfo, logged under its name and
// counted under "unknown".
func TestUnknownMethod(t *testing.T) {
	f := newFixture(t)
	var out []byte
	err := f.conn.Invoke(context.Background(), "/backup.v1.BackupService/Nope", []byte{}, &out, grpc.ForceCodec(rawCodec{}))
	st := status.Convert(err)
	if st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "/backup.v1.BackupService/Nope") {
		t.Fatalf("status %v, want Unimplemented naming the method", st)
	}
	if info, ok := st.Details()[0].(*errdetails.ErrorInfo); !ok || info.GetReason() != "UNKNOWN_METHOD" {
		t.Errorf("details %v, want ErrorInfo UNKNOWN_METHOD", st.Details())
	}
	counted := f.observed.Counted()
	if want := []string{"unknown Unimplemented"}; !slices.Equal(counted, want) {
		t.Errorf("counted %q, want %q", counted, want)
	}
	if logs := f.logs.String(); !strings.Contains(logs, `"method":"/backup.v1.BackupService/Nope"`) {
		t.Errorf("no log line: %s", logs)
	}
}

// TestOversizedRequest shows a gRPC request over 1 MiB refused
// INVALID_ARGUMENT BODY_TOO_LARGE through the interceptor, as REST's 413
// is, instead of grpc-go's unlogged RESOURCE_EXHAUSTED, which a client
// would retry.
func TestOversizedRequest(t *testing.T) {
	f := newFixture(t)
	name := strings.Repeat("x", maxRequestBytes)
	msg, err := proto.Marshal(&backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: name})
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	err = f.conn.Invoke(context.Background(), backupv1.BackupService_CreateBackup_FullMethodName, msg, &out, grpc.ForceCodec(rawCodec{}))
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "at most 1048576 bytes") {
		t.Fatalf("status %v, want InvalidArgument naming the limit", st)
	}
	if info, ok := st.Details()[0].(*errdetails.ErrorInfo); !ok || info.GetReason() != "BODY_TOO_LARGE" {
		t.Errorf("details %v, want ErrorInfo BODY_TOO_LARGE", st.Details())
	}
	if last := f.stub.Called(); last != nil {
		t.Errorf("the service was called")
	}
	if counted := f.observed.Counted(); !slices.Equal(counted, []string{backupv1.BackupService_CreateBackup_FullMethodName + " InvalidArgument"}) {
		t.Errorf("counted %q", counted)
	}
}

// TestDeferringCodecSweepsLeftovers: a status no interceptor took (the
// stream ended badly after its first message failed to decode) is dropped
// once it is stale, so such requests cannot grow the codec's map.
func TestDeferringCodecSweepsLeftovers(t *testing.T) {
	c := newDeferringCodec()
	now := time.Unix(1_700_000_000, 0)
	c.now = func() time.Time { return now }
	bad := mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x20, 'x'})}
	for range 3 {
		if err := c.Unmarshal(bad, &backupv1.CreateBackupRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.kept.Load(); got != 3 {
		t.Fatalf("kept %d, want 3", got)
	}
	now = now.Add(staleAfter + time.Second)
	taken := &backupv1.CreateBackupRequest{}
	if err := c.Unmarshal(bad, taken); err != nil {
		t.Fatal(err)
	}
	if got := c.kept.Load(); got != 1 {
		t.Errorf("kept %d after the sweep, want only the fresh one", got)
	}
	if err := c.take(taken); status.Code(err) != codes.InvalidArgument {
		t.Errorf("take: %v, want the fresh request's InvalidArgument", err)
	}
	if got := c.kept.Load(); got != 0 {
		t.Errorf("kept %d after take, want 0", got)
	}
}

// TestRevalidatedAsLargeAsARESTBody: an undecodable gRPC request has its
// other fields judged up to the size of the largest REST body, so that a
// request is told the same over both; the bound is a copy, as package
// server does not import package rest.
func TestRevalidatedAsLargeAsARESTBody(t *testing.T) {
	if maxRevalidatedBytes != rest.MaxBodyBytes {
		t.Errorf("maxRevalidatedBytes %d, rest.MaxBodyBytes %d; want them equal", maxRevalidatedBytes, rest.MaxBodyBytes)
	}
}
