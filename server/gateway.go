package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/service"
)

// MaxBodyBytes bounds a REST request body; larger ones get 413.
const MaxBodyBytes = 64 << 10

// NewHTTPHandler serves the REST API, /healthz, /readyz and, when metrics
// is not nil, GET /metrics. The REST API calls opts.Service in process,
// through the same interceptor as NewGRPC's server (inProcess), so a REST
// request is authorized, mapped, logged and counted like a gRPC one. A
// request the gateway refuses before it reaches the interceptor (a
// malformed body or query) is logged and counted by the error handler.
func NewHTTPHandler(ctx context.Context, opts Options, h *Health, metrics http.Handler) (http.Handler, error) {
	ic := newInterceptor(opts)
	g := &gateway{ic: ic}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &strictJSON{}),
		// Keeps %2F inside a path segment, so an escaped backup ARN is
		// captured whole as {backup_arn}.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptSlash),
		runtime.WithErrorHandler(g.handleError),
		runtime.WithRoutingErrorHandler(g.routingError),
		runtime.WithIncomingHeaderMatcher(forwardedHeader),
		runtime.SetQueryParameterParser(&queryParser{}),
		runtime.WithMiddlewares(keepPathParams),
		// No POST standing in for another method: grpc-gateway's default
		// runs a form-encoded POST as the GET of the same path, and one
		// with X-HTTP-Method-Override as any method, DELETE included,
		// past whatever rules a proxy keeps per method.
		runtime.WithDisablePathLengthFallback(),
	)
	if err := backupv1.RegisterBackupServiceHandlerServer(ctx, gw, inProcess(opts.Service, ic)); err != nil {
		return nil, fmt.Errorf("register gateway: %w", err)
	}
	g.mux = gw
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if !h.Ready(r.Context()) {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.Handle("/", track(gw))
	return mux, nil
}

// forwardedHeader passes on, as gRPC metadata, only the request headers the
// service reads: caller credentials and a request id for correlation. The
// default forwards every standard header, which costs allocations on every
// call and hands the service headers nobody reads.
func forwardedHeader(key string) (string, bool) {
	switch key {
	case "Authorization":
		return "authorization", true
	case "X-Request-Id":
		return "x-request-id", true
	}
	return "", false
}

// NewHTTPServer wraps h in an http.Server with every timeout set, so a slow
// or idle client cannot hold a connection open forever. writeTimeout must
// cover the longest request, upstream call included. tlsCfg, when not nil,
// serves HTTPS (see Serve).
func NewHTTPServer(h http.Handler, writeTimeout time.Duration, tlsCfg *tls.Config) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve serves srv on lis, over TLS when srv has a TLS configuration.
func Serve(srv *http.Server, lis net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(lis, "", "")
	}
	return srv.Serve(lis)
}

// strictJSON is protojson with lowerCamelCase names and enum names, that
// rejects unknown fields and anything after the JSON value: grpc-gateway's
// default discards unknown fields and ignores trailing bytes.
type strictJSON struct {
	runtime.JSONPb
}

// NewDecoder keeps, in the request's restCall, the body it read and, when
// protojson refuses it, the field violations for the error handler: the
// generated code keeps only the text of a decoding error.
func (m *strictJSON) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		msg, ok := v.(proto.Message)
		if !ok {
			return m.JSONPb.Unmarshal(data, v)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return io.EOF // an empty body is an empty request
		}
		lb, _ := r.(*limitedBody)
		if lb != nil {
			lb.call.body = data
		}
		err = protojson.Unmarshal(data, msg)
		if err != nil && lb != nil {
			lb.call.bodyViolations = bodyViolations(msg.ProtoReflect().Descriptor(), data, lb.call.params)
		}
		return err
	})
}

func (m *strictJSON) Unmarshal(data []byte, v any) error {
	if msg, ok := v.(proto.Message); ok {
		return protojson.Unmarshal(data, msg)
	}
	return m.JSONPb.Unmarshal(data, v)
}

// restCall follows one REST request through the gateway, for the error
// handler.
type restCall struct {
	start time.Time
	// params are the route's path parameters, once a route matched.
	params map[string]string
	// tooLarge is set when reading the body passed MaxBodyBytes.
	tooLarge bool
	// intercepted is set when the request reached the interceptor, which
	// then logged and counted it.
	intercepted bool
	// query is the URL's raw query, and body the JSON body once decoded.
	query string
	body  []byte
	// bodyViolations are the fields protojson refused in body.
	bodyViolations []service.FieldViolation
	// badTimeout is a Grpc-Timeout header that is not a gRPC timeout.
	badTimeout string
	// hasBody is set when a GET or DELETE request has a body.
	hasBody bool
}

// takesBody lists the methods whose route takes a JSON body.
var takesBody = map[string]bool{
	backupv1.BackupService_CreateBackup_FullMethodName:           true,
	backupv1.BackupService_RestoreTableFromBackup_FullMethodName: true,
}

// grpcTimeoutHeader sets a REST request's deadline, as gRPC's own header.
const grpcTimeoutHeader = "Grpc-Timeout"

// validTimeout reports whether v is a gRPC timeout: 1 to 8 digits and a
// unit, H M S m u or n.
func validTimeout(v string) bool {
	n := len(v) - 1
	if n < 1 || n > 8 || !strings.ContainsRune("HMSmun", rune(v[n])) {
		return false
	}
	for i := range n {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

type restCallKey struct{}

// track puts a restCall in each request's context and refuses bodies over
// MaxBodyBytes with 413: without reading a byte when the length is
// declared, or when reading passes the limit. grpc-gateway turns read
// errors into InvalidArgument, so the error handler learns of the overflow
// from the restCall, and logs and counts the request under its method.
func track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call := &restCall{start: time.Now(), query: r.URL.RawQuery, hasBody: hasBody(r)}
		metadataSafe(r.Header)
		r = r.WithContext(context.WithValue(r.Context(), restCallKey{}, call))
		if r.ContentLength > MaxBodyBytes {
			r.Body = &limitedBody{ReadCloser: declaredTooLarge{r.Body}, call: call}
		} else {
			r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, MaxBodyBytes), call: call}
		}
		next.ServeHTTP(w, r)
	})
}

// metadataSafe keeps the headers the gateway forwards as gRPC metadata
// (forwardedHeader) within what metadata may hold, printable ASCII. The
// gateway would drop another value with a plain-text line of its own in
// the log, and a token dropped that way would read as no token at all:
// a request without a token may pass in the sandbox. An Authorization
// value that is not printable ASCII is made one that no caller has, so it
// is refused as an unknown token; an unreadable X-Request-Id is dropped.
func metadataSafe(h http.Header) {
	if v := h.Get("Authorization"); v != "" && !printableASCII(v) {
		h.Set("Authorization", "unreadable")
	}
	if v := h.Get("X-Request-Id"); v != "" && !printableASCII(v) {
		h.Del("X-Request-Id")
	}
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
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
	n, _ := io.ReadFull(r.Body, first[:])
	if n > 0 {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(first[:n]), r.Body), r.Body}
	}
	return n > 0
}

// declaredTooLarge is the body of a request whose Content-Length is over
// MaxBodyBytes: reading it fails at once, as reading past the limit does.
type declaredTooLarge struct{ io.ReadCloser }

func (declaredTooLarge) Read([]byte) (int, error) {
	return 0, &http.MaxBytesError{Limit: MaxBodyBytes}
}

// keepPathParams records a matched route's path parameters in the
// request's restCall, for the error handler. A probe (see
// gateway.allowed) stops here, at the match.
func keepPathParams(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if p, ok := r.Context().Value(probeKey{}).(*probe); ok {
			p.matched, p.params = true, params
			return
		}
		if call, ok := r.Context().Value(restCallKey{}).(*restCall); ok {
			call.params = params
			// grpc-gateway refuses a malformed deadline before it
			// names the RPC, so the request would go unlogged; it is
			// refused in the interceptor instead (restRefusal).
			if v := r.Header.Get(grpcTimeoutHeader); v != "" && !validTimeout(v) {
				call.badTimeout = v
				r.Header.Del(grpcTimeoutHeader)
			}
		}
		next(w, r, params)
	}
}

// markIntercepted records that a REST request reached the interceptor. It
// does nothing for a gRPC request.
func markIntercepted(ctx context.Context) {
	if call, ok := ctx.Value(restCallKey{}).(*restCall); ok {
		call.intercepted = true
	}
}

type limitedBody struct {
	io.ReadCloser
	call *restCall
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.call.tooLarge = true
	}
	return n, err
}

func tooLarge(account string) *status.Status {
	st := status.New(codes.InvalidArgument, fmt.Sprintf("request body must be at most %d bytes", MaxBodyBytes))
	st, _ = st.WithDetails(errorInfo("BODY_TOO_LARGE", account))
	return st
}

// errorInfo is the ErrorInfo of an error the gateway makes itself.
func errorInfo(reason, account string) *errdetails.ErrorInfo {
	info := &errdetails.ErrorInfo{Domain: rpcerror.Domain, Reason: reason}
	if account != "" {
		info.Metadata = map[string]string{"account_id": account}
	}
	return info
}

func writeStatus(w http.ResponseWriter, st *status.Status, code int) {
	body, err := (&strictJSON{}).Marshal(st.Proto())
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"code":13,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// gateway handles the errors of grpc-gateway's handlers.
type gateway struct {
	ic  *interceptor
	mux *runtime.ServeMux
}

// handleError adds what grpc-gateway's default leaves out: Retry-After from
// RetryInfo, 413 for oversized bodies, and an ErrorInfo and field
// violations on the gateway's own decoding errors, so every REST error has
// the same shape as a gRPC one. A request refused before it reached the
// interceptor is logged and counted here.
func (g *gateway) handleError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	call, _ := r.Context().Value(restCallKey{}).(*restCall)
	if call == nil {
		call = &restCall{start: time.Now()}
	}
	account, region := pathTarget(call.params)
	st := status.Convert(err)
	tooBig := call.tooLarge
	switch {
	case tooBig:
		st = tooLarge(account)
	case len(st.Details()) == 0 && st.Code() == codes.InvalidArgument:
		st = malformed(ctx, r, call, st, account)
	}
	if method, ok := runtime.RPCMethod(ctx); ok && !call.intercepted {
		// Refused before the interceptor: the caller is still checked
		// first, as the interceptor does, so an unknown caller learns
		// nothing about the request's shape.
		principal, authErr := g.ic.authorizeIn(ctx, method, account)
		if authErr != nil {
			st, _ = rpcerror.Status(authErr, rpcerror.Request{AccountID: account})
			tooBig = false
		}
		g.ic.record(ctx, method, account, region, principal, call.start, st.Err())
	}
	if tooBig {
		writeStatus(w, st, http.StatusRequestEntityTooLarge)
		return
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			secs := math.Ceil(ri.GetRetryDelay().AsDuration().Seconds())
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(secs))))
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, st.Err())
}

// malformed gives one of grpc-gateway's own errors (malformed JSON, unknown
// fields, wrong types, bad path or query values) an ErrorInfo, and field
// violations when it can name the fields. Its generated code keeps only
// the text of the decoder's and queryParser's errors, so the violations
// are found again here, or were kept by the decoder.
func malformed(ctx context.Context, r *http.Request, call *restCall, st *status.Status, account string) *status.Status {
	vs := call.bodyViolations
	if len(vs) == 0 {
		vs = requestViolations(ctx, r, call)
	}
	if len(vs) > 0 {
		st, _ := rpcerror.Status(&service.InvalidArgumentError{Violations: vs}, rpcerror.Request{AccountID: account})
		return st
	}
	withInfo, err := status.New(codes.InvalidArgument, "malformed request: "+echo(st.Message(), 1024)).
		WithDetails(errorInfo("MALFORMED_REQUEST", account))
	if err != nil {
		return st
	}
	return withInfo
}

// pathTarget names, for the log, the account and region of a REST request's
// path: its {account_id}, or the account and region of its {backup_arn}.
func pathTarget(params map[string]string) (account, region string) {
	if arn, ok := params["backup_arn"]; ok {
		account, region = target(&backupv1.GetBackupRequest{BackupArn: arn})
	} else {
		account = params["account_id"]
	}
	return accountOrNone(account), regionOrNone(region)
}

// routingError answers a request that matched no route (404) or a route
// of another method (405, with the Allow header RFC 9110 asks for), and
// logs and counts it under the method "unknown", so callers cannot add
// label values.
func (g *gateway) routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if _, ok := r.Context().Value(probeKey{}).(*probe); ok {
		return
	}
	path := service.Quote(r.URL.Path)
	code, reason := codes.NotFound, "ROUTE_NOT_FOUND"
	msg := fmt.Sprintf("no route for %s %s; see the API reference", r.Method, path)
	if arn, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/backups/"); ok && strings.Contains(arn, "/") {
		msg = fmt.Sprintf("no route for %s %s: a backup ARN goes in the path as one segment, with each / escaped as %%2F", r.Method, path)
	}
	var account, region string
	if httpStatus == http.StatusMethodNotAllowed {
		methods, params := g.allowed(r)
		account, region = pathTarget(params)
		w.Header().Set("Allow", strings.Join(methods, ", "))
		code, reason = codes.Unimplemented, "METHOD_NOT_ALLOWED"
		msg = fmt.Sprintf("method %s is not allowed on %s; it takes %s", r.Method, path, strings.Join(methods, ", "))
		if strings.Contains(strings.ToLower(r.URL.EscapedPath()), "%3arestore") {
			msg += "; a restore is POST …{backup_arn}:restore, with the colon before restore unescaped"
		}
	}
	st, _ := status.New(code, msg).WithDetails(errorInfo(reason, account))
	g.logRouting(r, code, account, region)
	if httpStatus == http.StatusMethodNotAllowed {
		writeStatus(w, st, httpStatus)
		return
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, st.Err())
}

// logRouting writes the log line of a request that matched no route, and
// counts it.
func (g *gateway) logRouting(r *http.Request, code codes.Code, account, region string) {
	start := time.Now()
	if call, ok := r.Context().Value(restCallKey{}).(*restCall); ok {
		start = call.start
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	route := echo(r.Method+" "+r.URL.Path, maxMethodEcho)
	d := time.Since(start)
	g.ic.log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("method", "unknown"), slog.String("route", route),
		slog.String("caller", "rest:"+host), slog.String("account", account), slog.String("region", region),
		slog.String("code", code.String()), slog.Duration("duration", d))
	if g.ic.metrics != nil {
		g.ic.metrics.ObserveRequest("unknown", code, d)
	}
}

// restRefusal checks what grpc-gateway lets pass on a REST request without
// a word: query parameters on a route that takes none (only ListBackups
// reads its query), and body fields that say otherwise than the path. It
// returns nil for a gRPC request. It runs inside the interceptor, so the
// refusal is authorized, logged and counted like any invalid request.
func restRefusal(ctx context.Context, method string, req proto.Message) error {
	call, ok := ctx.Value(restCallKey{}).(*restCall)
	if !ok {
		return nil
	}
	var vs []service.FieldViolation
	if call.badTimeout != "" {
		vs = append(vs, service.FieldViolation{Field: grpcTimeoutHeader, Description: fmt.Sprintf(
			"%s header must be 1-8 digits and a unit, H M S m u or n (5S is five seconds); got %s",
			grpcTimeoutHeader, service.Quote(call.badTimeout))})
	}
	if call.query != "" && method != backupv1.BackupService_ListBackups_FullMethodName {
		values, err := url.ParseQuery(call.query)
		for _, key := range slices.Sorted(maps.Keys(values)) {
			vs = append(vs, service.FieldViolation{Field: queryKey(key), Description: fmt.Sprintf(
				"%s is not a query parameter of this route; it takes none", queryKey(key))})
		}
		if len(values) == 0 && err != nil {
			vs = append(vs, service.FieldViolation{Field: "query", Description: fmt.Sprintf(
				"query is not taken by this route; got %s", service.Quote(call.query))})
		}
	}
	if call.hasBody && !takesBody[method] {
		vs = append(vs, service.FieldViolation{Field: "body",
			Description: "body is not taken by this route: its parameters are in the path (and, for ListBackups, the query)"})
	}
	if len(call.body) > 0 {
		vs = append(vs, pathConflicts(req, call.body, call.params)...)
	}
	if len(vs) == 0 {
		return nil
	}
	return &service.InvalidArgumentError{Violations: vs}
}

type probeKey struct{}

// probe marks a request that only asks whether a route matches, and
// which path parameters it matched.
type probe struct {
	matched bool
	params  map[string]string
}

// allowed lists the methods r's path has a route for, and the path
// parameters of the first. It asks the gateway's own router, with each
// method, whether a route matches; a probe stops at the match
// (keepPathParams), so no handler runs.
func (g *gateway) allowed(r *http.Request) (methods []string, params map[string]string) {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		p := &probe{}
		pr := r.Clone(context.WithValue(r.Context(), probeKey{}, p))
		pr.Method, pr.Body, pr.ContentLength = m, http.NoBody, 0
		g.mux.ServeHTTP(discardResponse{}, pr)
		if p.matched {
			methods = append(methods, m)
			if params == nil {
				params = p.params
			}
		}
	}
	return methods, params
}

// discardResponse is a ResponseWriter that keeps nothing.
type discardResponse struct{}

func (discardResponse) Header() http.Header         { return http.Header{} }
func (discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (discardResponse) WriteHeader(int)             {}
