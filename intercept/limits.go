package intercept

import "time"

// The bounds both transports hold a request to, so that a caller meets
// the same ones over gRPC and REST, and a shutdown gives both the same
// grace: each transport reads them from here rather than keep a copy that
// could drift from the other's.
const (
	// HandshakeTimeout bounds a new connection's handshake on both
	// listeners (the HTTP listener's ReadHeaderTimeout, for a request's
	// headers).
	HandshakeTimeout = 5 * time.Second
	// MaxHeaderBytes bounds a request's headers, over HTTP and as gRPC
	// metadata alike.
	MaxHeaderBytes = 64 << 10
	// ArrivalTimeout bounds the arrival of a request once its call has
	// begun: a REST request, body included (64 KiB at most), or the
	// message of a gRPC call.
	ArrivalTimeout = 30 * time.Second
	// DrainGrace is how long a request still arriving when the servers
	// shut down has left to arrive: a REST body, or the request of a
	// gRPC call. One sent at once is in within milliseconds.
	DrainGrace = time.Second
)
