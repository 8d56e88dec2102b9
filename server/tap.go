package server

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// tap checks a BackupService call's caller when its stream opens, before
// grpc-go reads the request: grpc-go reads a whole message (up to
// maxRecvMsgSize) before any interceptor runs, so a caller backupd does
// not know could otherwise make it hold that much on every stream a
// connection takes, for as long as the message stays unfinished. A caller
// it does not know is refused there, logged and counted, as the REST
// gateway refuses one from its headers alone; a known caller goes on to
// the interceptor, which authorizes it for the account its request names.
func (i *interceptor) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if i.authz == nil || !strings.HasPrefix(info.FullMethodName, servicePrefix) {
		return ctx, nil
	}
	start := time.Now()
	mdCtx := metadata.NewIncomingContext(ctx, info.Header)
	err := i.authz.Authenticate(mdCtx)
	if err == nil {
		return ctx, nil
	}
	method, known := info.FullMethodName, served[info.FullMethodName]
	if !known {
		method = echo(method, maxMethodEcho)
	}
	line := requestLine{method: method, caller: caller(ctx), account: accountOrNone(""), region: regionOrNone(""),
		unknown: !known}
	st := line.fail(mdCtx, err)
	i.write(mdCtx, line, start)
	return ctx, st.Err()
}

// served holds the full names of the BackupService methods backupd serves.
var served = func() map[string]bool {
	m := map[string]bool{}
	for _, md := range backupv1.BackupService_ServiceDesc.Methods {
		m[servicePrefix+md.MethodName] = true
	}
	return m
}()
