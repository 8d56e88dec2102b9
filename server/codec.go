package server

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// deferringCodec is grpc-go's proto codec, except that a BackupService
// request it cannot take (over maxRequestBytes, or not decodable: invalid
// UTF-8 in a string, a truncated message) reaches the interceptor as an
// empty request and a status kept for it. grpc-go itself answers such a
// request before any interceptor runs (INTERNAL "failed to unmarshal",
// RESOURCE_EXHAUSTED for its size limit), so it was neither logged nor
// counted, and its caller was told the fault was backupd's, or to retry.
// Only BackupService's requests are deferred: all its methods are unary,
// so the interceptor takes every status kept here.
type deferringCodec struct {
	encoding.CodecV2
	failed sync.Map // proto.Message → *status.Status
}

func newDeferringCodec() *deferringCodec {
	return &deferringCodec{CodecV2: encoding.GetCodecV2(protocodec.Name)}
}

func (c *deferringCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ours := v.(proto.Message)
	ours = ours && m.ProtoReflect().Descriptor().ParentFile() == backupv1.File_backup_v1_backup_service_proto
	if n := data.Len(); ours && n > maxRequestBytes {
		st, _ := status.New(codes.InvalidArgument, fmt.Sprintf("request message must be at most %d bytes; got %d", maxRequestBytes, n)).
			WithDetails(errorInfo("BODY_TOO_LARGE", ""))
		c.failed.Store(m, st)
		return nil
	}
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil || !ours {
		return err
	}
	proto.Reset(m)
	st, _ := status.New(codes.InvalidArgument, "malformed request: the message could not be decoded: "+err.Error()).
		WithDetails(errorInfo("MALFORMED_REQUEST", ""))
	c.failed.Store(m, st)
	return nil
}

// take returns, and forgets, the status kept for req.
func (c *deferringCodec) take(req any) error {
	if c == nil {
		return nil
	}
	st, ok := c.failed.LoadAndDelete(req)
	if !ok {
		return nil
	}
	return st.(*status.Status).Err()
}
