package server

import (
	"io"
	"net"

	"google.golang.org/grpc/credentials"

	"github.com/backupd/backupd/connlimit"
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
