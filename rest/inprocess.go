package rest

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/intercept"
)

// inProcess returns svc behind g's interceptor, made as the gRPC server's
// (server.NewGRPC), for the REST gateway to call directly: a REST request is
// recovered, mapped and logged exactly like a gRPC one, without being
// encoded again and sent through an in-memory HTTP/2 connection.
func inProcess(svc backupv1.BackupServiceServer, g *gateway) backupv1.BackupServiceServer {
	return &intercepted{svc: svc, ic: g.ic, violations: g.violations}
}

type intercepted struct {
	backupv1.UnimplementedBackupServiceServer
	svc        backupv1.BackupServiceServer
	ic         *intercept.Interceptor
	violations fieldRules
}

func (s *intercepted) CreateBackup(ctx context.Context, req *backupv1.CreateBackupRequest) (*backupv1.CreateBackupResponse, error) {
	return call(ctx, s, backupv1.BackupService_CreateBackup_FullMethodName, req, s.svc.CreateBackup)
}

func (s *intercepted) GetBackup(ctx context.Context, req *backupv1.GetBackupRequest) (*backupv1.GetBackupResponse, error) {
	return call(ctx, s, backupv1.BackupService_GetBackup_FullMethodName, req, s.svc.GetBackup)
}

func (s *intercepted) ListBackups(ctx context.Context, req *backupv1.ListBackupsRequest) (*backupv1.ListBackupsResponse, error) {
	return call(ctx, s, backupv1.BackupService_ListBackups_FullMethodName, req, s.svc.ListBackups)
}

func (s *intercepted) DeleteBackup(ctx context.Context, req *backupv1.DeleteBackupRequest) (*backupv1.DeleteBackupResponse, error) {
	return call(ctx, s, backupv1.BackupService_DeleteBackup_FullMethodName, req, s.svc.DeleteBackup)
}

func (s *intercepted) RestoreTableFromBackup(ctx context.Context, req *backupv1.RestoreTableFromBackupRequest) (*backupv1.RestoreTableFromBackupResponse, error) {
	return call(ctx, s, backupv1.BackupService_RestoreTableFromBackup_FullMethodName, req, s.svc.RestoreTableFromBackup)
}

// call runs method through the interceptor, as grpc-go's generated
// handlers do.
func call[Req, Resp any](ctx context.Context, s *intercepted, method string, req *Req,
	handle func(context.Context, *Req) (*Resp, error)) (*Resp, error) {
	markIntercepted(ctx)
	info := &grpc.UnaryServerInfo{Server: s.svc, FullMethod: method}
	resp, err := s.ic.Unary(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		if err := restRefusal(ctx, method); err != nil {
			return nil, alsoRefused(ctx, err, req.(proto.Message), s.violations)
		}
		return handle(ctx, req.(*Req))
	})
	nameSpan(ctx, method)
	if err != nil {
		return nil, err
	}
	return resp.(*Resp), nil
}

// alsoRefused adds to restRefusal's violations what the RPC's own
// validation refuses in the request's other fields, so that a request
// with several problems is told them all, as over gRPC: unless the body
// was refused unread (compressed), whose fields would all read as
// missing.
func alsoRefused(ctx context.Context, err error, req proto.Message, violations fieldRules) error {
	bad, ok := errors.AsType[*badrequest.Error](err)
	if call := restCallOf(ctx); !ok || call == nil || call.badEncoding != "" {
		return err
	}
	named := slices.Clone(bad.Violations)
	md := req.ProtoReflect().Descriptor()
	for _, v := range bad.Violations {
		// A query key names its field by the spelling it was sent in.
		if fd, name := lookupField(md, v.Field); fd != nil && name != v.Field {
			named = append(named, badrequest.Violation{Field: name})
		}
	}
	return &badrequest.Error{Violations: append(bad.Violations, badrequest.Beside(named, violations(req, named...))...)}
}
