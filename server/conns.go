package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/backupd/backupd/connlimit"
	"github.com/backupd/backupd/logcap"
)

// limitedCredentials counts each gRPC connection in a connlimit.Limiter
// from its handshake on, and closes one over the limits before reading a
// byte of it. It counts there, not in the listener, for the reason
// quietCredentials tracks there: grpc-go sets its socket options
// (TCP_USER_TIMEOUT) on the connection the listener hands out only when
// it is the raw TCP connection. grpc-go closes the connection this
// handshake returns when the transport ends; a handshake that fails is
// uncounted here.
type limitedCredentials struct {
	credentials.TransportCredentials
	conns *connlimit.Limiter
}

func (c limitedCredentials) ServerHandshake(raw net.Conn) (_ net.Conn, _ credentials.AuthInfo, err error) {
	release, ok := c.conns.Admit(raw.RemoteAddr())
	if !ok {
		raw.Close()
		// What grpc-go takes for a connection its client closed: not
		// logged, as a flood of refusals would be.
		return nil, nil, io.EOF
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	return c.TransportCredentials.ServerHandshake(connlimit.Conn(raw, release))
}

func (c limitedCredentials) Clone() credentials.TransportCredentials {
	return limitedCredentials{c.TransportCredentials.Clone(), c.conns}
}

// loggedCredentials writes a failed TLS handshake on the gRPC listener to
// the log, as net/http does on the HTTP listener (package rest's
// cappedLog): at most once per interval, with how many were left out
// since, since anyone who can reach the port could otherwise fill the log.
// Without it a client refused for its certificate (mutual TLS) left no
// trace at the server.
type loggedCredentials struct {
	credentials.TransportCredentials
	log *slog.Logger
	cap *logcap.Capper
}

// grpcHandshakeError starts the line of a failed handshake.
const grpcHandshakeError = "grpc: TLS handshake error"

func (c loggedCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	// A connection closed under its handshake was closed by backupd
	// (closeQuiet, at the drain): not the client's failure.
	if err != nil && !errors.Is(err, net.ErrClosed) {
		if leftOut, ok := c.cap.Admit(grpcHandshakeError, time.Now()); ok {
			c.log.LogAttrs(context.Background(), slog.LevelWarn, fmt.Sprintf("%s from %s: %v", grpcHandshakeError, raw.RemoteAddr(), err),
				logcap.LeftOut(leftOut)...)
		}
	}
	return conn, info, err
}

func (c loggedCredentials) Clone() credentials.TransportCredentials {
	return loggedCredentials{c.TransportCredentials.Clone(), c.log, c.cap}
}
