package rest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/intercept"
)

// restCall follows one REST request through the gateway, for the error
// handler.
type restCall struct {
	// origin is what the interceptor is told of the request: its start,
	// the host of the connection's peer, which the log names the caller
	// by, and the request's X-Forwarded-For, which any client can set,
	// shown beside it.
	origin intercept.Origin
	// challenge is the WWW-Authenticate challenge of a request the
	// authorizer refused as unauthenticated (challengeKeeper).
	challenge string
	// params are the route's path parameters, once a route matched.
	params map[string]string
	// tooLarge is set when reading the body passed MaxBodyBytes.
	tooLarge bool
	// intercepted is set when the request reached the interceptor, which
	// then logged and counted it.
	intercepted bool
	// query is the URL's raw query.
	query string
	// pathConflicts are the path fields the body says otherwise of.
	pathConflicts []badrequest.Violation
	// refusedBody is the body protojson refused, kept so that what is
	// wrong with it is worked out only once its caller is known
	// (malformed): an unknown caller costs no more than the reading of it.
	refusedBody *refusedBody
	// badTimeout is a Grpc-Timeout header that is not a gRPC timeout,
	// and badEncoding a Content-Encoding other than identity.
	badTimeout, badEncoding string
	// hasBody is set when a GET or DELETE request has a body.
	hasBody bool
	// bodyLate is set when the body did not arrive in time, and cutShort
	// when that time was cut short by the server's shutdown.
	bodyLate, cutShort bool
	// bodyEnded is set when the body ended before all of it arrived: the
	// client went away mid-body, or sent less than it announced.
	bodyEnded bool
	// unread is set when the request is answered with its body left
	// unread (closeUnread): an unknown caller's, say, whose body is not
	// waited for, not even to drain it (drainRefused).
	unread bool
}

// takesBody lists the methods whose route takes a JSON body.
var takesBody = map[string]bool{
	backupv1.BackupService_CreateBackup_FullMethodName:           true,
	backupv1.BackupService_RestoreTableFromBackup_FullMethodName: true,
}

// grpcTimeoutHeader sets a REST request's deadline, as gRPC's own header.
const grpcTimeoutHeader = "Grpc-Timeout"

// validTimeout reports whether v is a gRPC timeout: 1 to 8 digits and a
// unit, H M S m u or n. Zero, a deadline already past, is refused too:
// grpc-gateway would take it for none.
func validTimeout(v string) bool {
	n := len(v) - 1
	if n < 1 || n > 8 || !strings.ContainsRune("HMSmun", rune(v[n])) {
		return false
	}
	zero := true
	for i := range n {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
		zero = zero && v[i] == '0'
	}
	return !zero
}

type restCallKey struct{}

// withRestCall returns ctx carrying call, the REST request it belongs to.
func withRestCall(ctx context.Context, call *restCall) context.Context {
	return context.WithValue(ctx, restCallKey{}, call)
}

// restCallOf is the REST request ctx belongs to (set by track), or nil.
func restCallOf(ctx context.Context) *restCall {
	call, _ := ctx.Value(restCallKey{}).(*restCall)
	return call
}

// originOf is what the interceptor is told of the REST request ctx
// belongs to (intercept.Options.Origin), or nil.
func originOf(ctx context.Context) *intercept.Origin {
	if call := restCallOf(ctx); call != nil {
		return &call.origin
	}
	return nil
}

// track puts a restCall in each request's context, keeps the headers the
// gateway forwards readable as metadata (metadataSafe), and refuses bodies
// over MaxBodyBytes with 413: without reading a byte when the length is
// declared, or when reading passes the limit. grpc-gateway turns read
// errors into InvalidArgument, so the error handler learns of the overflow
// from the restCall, and logs and counts the request under its method.
// A body still arriving when the server shuts down is cut short
// (bodyReads).
func track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		call := &restCall{origin: intercept.Origin{Start: time.Now(), Caller: "rest:" + host, ForwardedFor: r.Header.Get("X-Forwarded-For")},
			query: r.URL.RawQuery}
		metadataSafe(r.Header)
		body := &limitedBody{call: call}
		if r.ContentLength > MaxBodyBytes {
			body.ReadCloser = declaredTooLarge{r.Body}
			if r.ProtoMajor == 1 && r.ContentLength <= maxDrainedBytes && r.Header.Get("Expect") == "" {
				defer func(body io.Reader) {
					if !call.unread {
						drainRefused(w, body) // after the answer is made, before it is sent
					}
				}(r.Body)
			}
		} else {
			body.ReadCloser = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
			if r.ContentLength != 0 {
				body.reads, body.w = bodyReadsOf(r.Context()), w
			}
			if r.ContentLength < 0 && r.ProtoMajor == 1 {
				// A chunked body is refused as its reading passes the
				// limit; what is left of it is drained as a declared
				// one's is. An Expect: 100-continue client was told to
				// go on by that reading, and is sending the rest too.
				defer func(body io.Reader) {
					if call.tooLarge && !call.unread {
						drainRefused(w, body)
					}
				}(r.Body)
			}
		}
		r = r.WithContext(withRestCall(r.Context(), call))
		r.Body = body
		defer body.answered()
		next.ServeHTTP(w, r)
	})
}

// metadataSafe keeps the headers the gateway forwards as gRPC metadata
// (forwardedHeader) within what metadata may hold, printable ASCII. The
// gateway would drop another value with a plain-text line of its own in
// the log, and a token dropped that way would read as no token at all:
// a request without a token may pass in the sandbox, and a second one
// dropped would leave the first to pass alone. Each Authorization value
// that is not printable ASCII is made one that no caller has, so it is
// refused as an unknown token, and as many values arrive as were sent; an
// unreadable X-Request-Id is dropped.
func metadataSafe(h http.Header) {
	vs := h.Values("Authorization") // the header's own values, replaced in place
	for i, v := range vs {
		if unreadable(v) {
			vs[i] = "unreadable"
		}
	}
	if slices.ContainsFunc(h.Values("X-Request-Id"), unreadable) {
		h.Del("X-Request-Id")
	}
}

func unreadable(v string) bool { return !callers.PrintableASCII(v) }

// identityOnly reports whether Content-Encoding values vs say the body is
// not encoded: none, or identity.
func identityOnly(vs []string) bool {
	for _, v := range vs {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return false
			}
		}
	}
	return true
}

// hasBody reports whether a GET or DELETE request, whose routes take no
// body, has one. A body of unknown length (chunked, or HTTP/2 without a
// Content-Length) is peeked at: some clients end an empty one that way.
func hasBody(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		return false
	}
	if r.ContentLength >= 0 {
		return r.ContentLength > 0
	}
	var first [1]byte
	n, err := io.ReadFull(r.Body, first[:])
	if n > 0 {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(first[:n]), r.Body), r.Body}
	}
	// A body that did not end cleanly (it did not arrive within the read
	// timeout, say) is not an empty one: the call must not go on as if it
	// had none.
	return n > 0 || !errors.Is(err, io.EOF)
}

// maxDrainedBytes and drainTimeout bound what drainRefused reads of a
// body refused for its length: a few times the largest body
// anyone sends by mistake, and read within a second, or the connection
// is closed with the rest unread.
const (
	maxDrainedBytes = 4 << 20
	drainTimeout    = time.Second
)

// drainRefused reads and throws away the body of a request refused for
// its length, declared or read, before its 413 goes out. A client that
// writes its whole body before it reads the answer (Python's urllib and
// requests, most HTTP/1.1 clients) otherwise finds the connection reset
// under it, the body unread, and reports a broken pipe rather than the
// 413. One that declared its length and asked to be told first (Expect:
// 100-continue, as curl does for large bodies) is not drained: it is
// told 413 before it sends the body.
// Nor is an HTTP/2 one, whose unread body ends only its stream, or one
// answered from its headers alone (closeUnread: an unknown caller, a
// route backupd does not have), whose body is not waited for at all.
func drainRefused(w http.ResponseWriter, body io.Reader) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(drainTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrainedBytes))
}

// declaredTooLarge is the body of a request whose Content-Length is over
// MaxBodyBytes: reading it fails at once, as reading past the limit does.
type declaredTooLarge struct{ io.ReadCloser }

func (declaredTooLarge) Read([]byte) (int, error) {
	return 0, &http.MaxBytesError{Limit: MaxBodyBytes}
}

// keepPathParams records a matched route's path parameters in the
// request's restCall, for the error handler. A probe (see
// gateway.allowed) stops here, at the match. A route without a custom
// verb that matched the path of one with it, its last variable taking in
// the verb (GET /v1/backups/{backup_arn} matches the restore's
// …:restore), answers 405 as the verb route's wrong method would, rather
// than handing the service an ARN that ends in the verb.
func (g *gateway) keepPathParams(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		pattern, _ := runtime.HTTPPattern(r.Context())
		if p, ok := r.Context().Value(probeKey{}).(*probe); ok {
			p.matched, p.verb, p.params = true, pattern.Verb(), params
			p.template = strings.ReplaceAll(pattern.String(), "=*}", "}")
			return
		}
		if pattern.Verb() == "" && endsInVerb(r.URL.EscapedPath()) {
			if methods, _, _ := g.allowed(r); !slices.Contains(methods, r.Method) {
				_, m := runtime.MarshalerForRequest(g.mux, r)
				g.routingError(r.Context(), g.mux, m, w, r, http.StatusMethodNotAllowed)
				return
			}
		}
		call := restCallOf(r.Context()) // set by track
		call.params = params
		// grpc-gateway refuses a malformed deadline before it names the
		// RPC, so the request would go unlogged; it is refused in the
		// interceptor instead (restRefusal).
		if vs := r.Header.Values(grpcTimeoutHeader); len(vs) > 1 || len(vs) == 1 && vs[0] != "" && !validTimeout(vs[0]) {
			// grpc-gateway reads only the first of several; the caller
			// meant one, and which is not for backupd to guess.
			call.badTimeout = strings.Join(vs, ", ")
			r.Header.Del(grpcTimeoutHeader)
		}
		if r.ContentLength != 0 && g.refusedFromHeaders(r, pattern) {
			// An unknown caller, or one refused the operation in every
			// account, is refused from its headers: its body, which may
			// come slowly or never, is not waited for, and the
			// interceptor refuses the request as ever.
			leaveBody(w, r)
		}
		if vs := r.Header.Values("Content-Encoding"); r.ContentLength != 0 && !identityOnly(vs) {
			// A body backupd cannot decode, or that says it is other
			// than it is: refused unread, in the interceptor
			// (restRefusal), whatever it holds.
			call.badEncoding = strings.Join(vs, ", ")
			leaveBody(w, r)
		}
		if call.hasBody = hasBody(r); call.hasBody {
			// Refused unread (restRefusal): net/http would otherwise read
			// the rest before the answer, for as long as it takes to come.
			closeUnread(w, r)
		}
		next(w, r, params)
	}
}

// closeUnread closes an HTTP/1 connection once it has answered a request
// whose body, if it has one, backupd leaves unread. net/http would
// otherwise read what is left of the body, before the answer and again
// after it, to keep the connection: a body that comes slowly or never
// would hold the answer, or the connection, for the whole read timeout.
// Over HTTP/2 only the stream ends, and net/http resets it itself.
func closeUnread(w http.ResponseWriter, r *http.Request) {
	if call := restCallOf(r.Context()); call != nil {
		call.unread = true
	}
	if r.ProtoMajor != 1 || r.ContentLength == 0 {
		return
	}
	w.Header().Set("Connection", "close")
	// Nothing more is read from this connection.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// leaveBody takes r as having no body, and closes its connection once it
// has answered, its body unread (closeUnread).
func leaveBody(w http.ResponseWriter, r *http.Request) {
	r.Body = http.NoBody
	closeUnread(w, r)
}

// endsInVerb reports whether an escaped path's last segment ends in what
// may be a custom verb: an unescaped colon and a word. A backup ARN's
// last colon is followed by table%2F…, so GetBackup and DeleteBackup
// requests do not pay for gateway.allowed's probes.
func endsInVerb(escapedPath string) bool {
	seg := escapedPath[strings.LastIndexByte(escapedPath, '/')+1:]
	i := strings.LastIndexByte(seg, ':')
	if i < 0 || i == len(seg)-1 {
		return false
	}
	for _, c := range seg[i+1:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// markIntercepted records that a REST request reached the interceptor. It
// does nothing for a gRPC request.
func markIntercepted(ctx context.Context) {
	if call := restCallOf(ctx); call != nil {
		call.intercepted = true
	}
}

// challengeKeeper is the authorizer the gateway's interceptor asks, in
// and before it: it records, for the error handler, the challenge of a
// REST request it refuses as unauthenticated, which the status that
// reaches the handler keeps only as its message (grpc-gateway would copy
// that into WWW-Authenticate as free text).
type challengeKeeper struct{ intercept.Authorizer }

func (a challengeKeeper) Authorize(ctx context.Context, operation, account string) (string, error) {
	caller, err := a.Authorizer.Authorize(ctx, operation, account)
	if challenge, ok := callers.ChallengeOf(err); ok {
		if call := restCallOf(ctx); call != nil {
			call.challenge = challenge
		}
	}
	return caller, err
}

// refusedFromHeaders reports whether a REST request of the route pattern
// matched is refused from its Authorization headers alone, as the
// interceptor would refuse it from the metadata the gateway makes of
// them: its caller is unknown, or refused the route's RPC in every
// account (intercept's AuthorizeAnywhere). A route of no known RPC is
// left to the interceptor.
func (g *gateway) refusedFromHeaders(r *http.Request, pattern runtime.Pattern) bool {
	if g.authz == nil {
		return false
	}
	rpc, ok := routeMethods[r.Method+" "+strings.ReplaceAll(pattern.String(), "=*}", "}")]
	if !ok {
		return false
	}
	_, err := g.ic.AuthorizeAnywhere(callerMetadata(r), rpc)
	return err != nil
}

// callerMetadata is r's context with the metadata the gateway would make
// of its Authorization and X-Request-Id headers, for a check of its
// caller (and its log line) made before, or without, the gateway's own.
func callerMetadata(r *http.Request) context.Context {
	return metadata.NewIncomingContext(r.Context(),
		metadata.MD{"authorization": r.Header.Values("Authorization"), "x-request-id": r.Header.Values("X-Request-Id")})
}

// nameSpan names a REST request's span, when one is recorded, by the
// method and route of the RPC it called, as HTTP servers' spans are
// named: also a request the gateway did not match for a path variable
// left empty (emptyPathFields), which is answered as its route's.
func nameSpan(ctx context.Context, method string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if route, ok := restRoutes[method]; ok {
		_, template, _ := strings.Cut(route, " ")
		span.SetName(route)
		span.SetAttributes(attribute.String("http.route", template))
	}
}

// restRoutes is routeMethods the other way round: the REST route (method
// and path template) of each RPC.
var restRoutes = func() map[string]string {
	m := make(map[string]string, len(routeMethods))
	for route, rpc := range routeMethods {
		m[rpc] = route
	}
	return m
}()

// challengeWriter sets a 401's WWW-Authenticate as its header is written,
// over the status message grpc-gateway's default error handler puts there.
type challengeWriter struct {
	http.ResponseWriter
	challenge string
}

func (w challengeWriter) WriteHeader(code int) {
	w.Header().Set("WWW-Authenticate", w.challenge)
	w.ResponseWriter.WriteHeader(code)
}

// limitedBody is a REST request's body: it records in call a read that
// passed MaxBodyBytes, and, when reads is not nil, is cut short if it is
// still arriving when the server shuts down (bodyReads).
type limitedBody struct {
	io.ReadCloser
	call  *restCall
	reads *bodyReads
	w     http.ResponseWriter // its request's, to set the read deadline
	// started is set at the first read; watched and deadline are
	// guarded by reads.mu.
	started, watched, deadline bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.reads != nil && !b.started {
		b.started = true
		b.reads.start(b)
	}
	n, err := b.ReadCloser.Read(p)
	if err == nil {
		return n, nil
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		b.call.tooLarge = true
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.call.bodyLate = true
	case errors.Is(err, io.ErrUnexpectedEOF):
		b.call.bodyEnded = true
	}
	if b.reads != nil {
		b.reads.end(b, err)
	}
	return n, err
}

// answered records that the body's request was answered, read to its end
// or not.
func (b *limitedBody) answered() {
	if b.reads != nil && b.started {
		b.reads.end(b, nil)
	}
}

// restRefusal checks what grpc-gateway lets pass on a REST request without
// a word: query parameters on a route that takes none (only ListBackups
// reads its query), and body fields that say otherwise than the path. It
// returns nil for a gRPC request. It runs inside the interceptor, so the
// refusal is authorized, logged and counted like any invalid request.
func restRefusal(ctx context.Context, method string) error {
	call := restCallOf(ctx)
	if call == nil {
		return nil
	}
	var vs []badrequest.Violation
	if call.badEncoding != "" {
		vs = append(vs, badrequest.Violation{Field: "Content-Encoding", Description: fmt.Sprintf(
			"Content-Encoding header is not taken: send the body uncompressed, without it; got %s", badrequest.Quote(call.badEncoding))})
	}
	if call.badTimeout != "" {
		vs = append(vs, badrequest.Violation{Field: grpcTimeoutHeader, Description: fmt.Sprintf(
			"%s header must be given once, as 1-8 digits, not all 0, and a unit, H M S m u or n (5S is five seconds); got %s",
			grpcTimeoutHeader, badrequest.Quote(call.badTimeout))})
	}
	if call.query != "" && method != backupv1.BackupService_ListBackups_FullMethodName {
		values, err := url.ParseQuery(call.query)
		for _, key := range slices.Sorted(maps.Keys(values)) {
			vs = append(vs, badrequest.Violation{Field: keyName(key), Description: fmt.Sprintf(
				"%s is not a query parameter of this route; it takes none", keyName(key))})
		}
		if len(values) == 0 && err != nil {
			vs = append(vs, badrequest.Violation{Field: "query", Description: fmt.Sprintf(
				"query is not taken by this route; got %s", badrequest.Quote(call.query))})
		}
	}
	vs = append(vs, notText(call, method)...)
	if call.hasBody && !takesBody[method] {
		vs = append(vs, badrequest.Violation{Field: "body",
			Description: "body is not taken by this route: its parameters are in the path (and, for ListBackups, the query)"})
	}
	vs = append(vs, call.pathConflicts...)
	if len(vs) == 0 {
		return nil
	}
	return &badrequest.Error{Violations: vs}
}

// notText lists the path and query values that are not UTF-8 once
// unescaped (%80, say). gRPC refuses such a string as a malformed
// message; over REST the gateway would hand it to the service.
// It allocates nothing for a request whose values are all text.
//
// A query value is named by its field's proto path, as the query's other
// violations name it (page_size, whether sent as pageSize or page_size),
// so that a field is named once however else it is wrong. Only a query
// key that names a field of a route that takes a query is looked at: any
// other key is refused as one the route does not take, under its own
// name, and a second violation for it would say nothing new.
func notText(call *restCall, method string) []badrequest.Violation {
	var vs []badrequest.Violation
	add := func(field, got string) {
		vs = append(vs, badrequest.Violation{Field: field, Description: fmt.Sprintf(
			"%s must be UTF-8 text once unescaped; got %s", field, badrequest.Quote(got))})
	}
	for name, v := range call.params {
		if !utf8.ValidString(v) {
			add(name, v)
		}
	}
	if call.query != "" && method == backupv1.BackupService_ListBackups_FullMethodName {
		values, _ := url.ParseQuery(call.query)
		md := (*backupv1.ListBackupsRequest)(nil).ProtoReflect().Descriptor()
		for key, vals := range values {
			bad := slices.IndexFunc(vals, func(v string) bool { return !utf8.ValidString(v) })
			if bad < 0 {
				continue
			}
			if fd, name := lookupField(md, key); fd != nil {
				add(name, vals[bad])
			}
		}
	}
	slices.SortFunc(vs, func(a, b badrequest.Violation) int { return strings.Compare(a.Field, b.Field) })
	return vs
}

// refusedBody is a body protojson refused, as a request like msg.
type refusedBody struct {
	msg  proto.Message
	data []byte
}
