package server

import (
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
// request it cannot decode (invalid UTF-8 in a string, a truncated message)
// reaches the interceptor as an empty request and an error kept for it.
// grpc-go itself answers such a request INTERNAL ("failed to unmarshal")
// before any interceptor runs, so it was neither logged nor counted, and
// its caller was told the fault was backupd's. Only BackupService's
// requests are deferred: all its methods are unary, so the interceptor
// takes every error kept here.
type deferringCodec struct {
	encoding.CodecV2
	failed sync.Map // proto.Message → error
}

func newDeferringCodec() *deferringCodec {
	return &deferringCodec{CodecV2: encoding.GetCodecV2(protocodec.Name)}
}

func (c *deferringCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok || m.ProtoReflect().Descriptor().ParentFile() != backupv1.File_backup_v1_backup_service_proto {
		return err
	}
	proto.Reset(m)
	c.failed.Store(m, err)
	return nil
}

// take returns, and forgets, the decoding error kept for req, as the
// status its caller gets: INVALID_ARGUMENT, reason MALFORMED_REQUEST.
func (c *deferringCodec) take(req any) error {
	if c == nil {
		return nil
	}
	err, ok := c.failed.LoadAndDelete(req)
	if !ok {
		return nil
	}
	st, _ := status.New(codes.InvalidArgument, "malformed request: the message could not be decoded: "+err.(error).Error()).
		WithDetails(errorInfo("MALFORMED_REQUEST", ""))
	return st.Err()
}
