// Package rest serves backupd's API as REST through grpc-gateway, with
// the operators' endpoints (/healthz, /readyz, /metrics) beside it. Its
// calls reach the service in process, through an interceptor made as the
// gRPC server's (package intercept), so that a REST request is
// authorized, mapped, logged and counted like a gRPC call; what grpc-gateway
// lets pass or answers on its own is refused, logged and counted here in
// the same shape.
package rest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	gatewayv1 "github.com/backupd/backupd/gen/gateway/backup/v1"
	"github.com/backupd/backupd/intercept"
	"github.com/backupd/backupd/logcap"
	"github.com/backupd/backupd/service"
)

// MaxBodyBytes bounds a REST request body; larger ones get 413.
const MaxBodyBytes = 64 << 10

// Options configures the REST handler. Its Logger, Metrics and Authorizer
// are the gRPC server's (server.Options), so that a caller is treated
// alike over both.
type Options struct {
	Service backupv1.BackupServiceServer
	Logger  *slog.Logger
	// Metrics is told of every answered request; nil means none.
	Metrics intercept.RequestObserver
	// Authorizer decides who may make each BackupService call; nil lets
	// everyone make every call.
	Authorizer Authorizer
	// Tracing, when set, makes a span of every request but those to the
	// operators' endpoints (package tracing).
	Tracing Tracing
	// Violations names what a REST request that the gateway could read
	// only in part (a field of the wrong type, a query it could not
	// parse) would be refused in its other fields, so that it is told of
	// every bad field at once: service.Server.Violations, which knows the
	// account's configuration (a region it does not allow). unread are
	// the violations of the fields not read, which req holds empty: they
	// are not returned. Nil means service.Violations, the fields' own
	// rules alone.
	Violations func(req proto.Message, unread ...badrequest.Violation) []badrequest.Violation
}

// Authorizer names a request's caller and checks what it may call
// (package callers): the interceptor asks it of every call, and the
// gateway of a request with a body, from its headers alone and for no
// account in particular, so that it does not wait for the body of a
// caller it refuses whatever the body says.
type Authorizer = intercept.Authorizer

// Tracing makes the server spans of REST requests.
type Tracing interface {
	// HTTPHandler makes spans of the requests traced reports true of.
	HTTPHandler(h http.Handler, traced func(*http.Request) bool) http.Handler
}

// Health is what the handler needs of the servers' health and shutdown
// (server.Health), which the gRPC server shares.
type Health interface {
	// Ready reports whether /readyz answers ready.
	Ready(ctx context.Context) bool
	// Handling counts a request into its handler (1) and out (-1):
	// net/http does not wait for its handlers once the shutdown has
	// closed their connections, so the shutdown waits for them itself.
	Handling(delta int)
	// CutOffContext ends when the shutdown's timeout cuts in-flight
	// requests off: a request canceled then is logged as its caller saw
	// it.
	CutOffContext() context.Context
}

// NewHandler serves the REST API, /healthz, /readyz and, when metrics
// is not nil, GET /metrics. The REST API calls opts.Service in process,
// through an interceptor made as the gRPC server's (inProcess), so a REST
// request is authorized, mapped, logged and counted like a gRPC one. A
// request the gateway refuses before it reaches the interceptor (a
// malformed body or query) is logged and counted by the error handler.
func NewHandler(ctx context.Context, opts Options, h Health, metrics http.Handler) (http.Handler, error) {
	g := newGateway(opts, h.CutOffContext())
	strict := newStrictJSON()
	gw, err := g.newMux(ctx, opts, strict)
	if err != nil {
		return nil, err
	}
	g.mux = gw
	api := track(gw)
	mux := g.operations(h, metrics)
	mux.Handle("/", api)
	// http.ServeMux would redirect a path that is not clean to the cleaned
	// one, unlogged, and a client that follows a 307 sends its POST again
	// there; the gateway could match it, with "." or ".." for a path
	// parameter. Such a path is a route the API does not have.
	unclean := track(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.routingError(r.Context(), gw, strict, w, r, http.StatusNotFound)
	}))
	return traced(opts.Tracing, func(w http.ResponseWriter, r *http.Request) {
		h.Handling(1)
		defer h.Handling(-1)
		// The path as the gateway splits it: RawPath, which EscapedPath
		// would give up for one Go finds not escaped well (a "|" in it).
		sent := cmp.Or(r.URL.RawPath, r.URL.Path)
		switch {
		case cleanPath(sent) != sent:
			unclean.ServeHTTP(w, r)
		case r.URL.RawPath != "" && cleanPath(r.URL.Path) != r.URL.Path:
			// Only escaped characters (a %2F at a segment's end, an
			// escaped "..") make it unclean: they are inside one segment,
			// a path parameter, which the service then judges (400 naming
			// the field). http.ServeMux would redirect it.
			api.ServeHTTP(w, r)
		default:
			mux.ServeHTTP(w, r)
		}
	}), nil
}

// newGateway returns the gateway of opts, its mux yet to make; cutOff,
// when not nil, ends when the shutdown's timeout cuts in-flight calls off
// (Health.CutOffContext).
func newGateway(opts Options, cutOff context.Context) *gateway {
	g := &gateway{log: opts.Logger, authz: opts.Authorizer, violations: fieldRules(opts.Violations)}
	if g.violations == nil {
		g.violations = fieldsOnly
	}
	var authz intercept.Authorizer
	if opts.Authorizer != nil { // nil lets everyone make every call
		authz = challengeKeeper{opts.Authorizer}
	}
	g.ic = intercept.New(intercept.Options{Logger: opts.Logger, Metrics: opts.Metrics, Authorizer: authz,
		CutOff: cutOff, Origin: originOf})
	return g
}

// traced is h, making a span of every request when t is set but of those
// to the operators' endpoints (operatorPaths): as health checks over
// gRPC, they are not traced, whatever their method.
func traced(t Tracing, h http.HandlerFunc) http.Handler {
	if t == nil {
		return h
	}
	// http.ServeMux sets the Pattern of the request it is given, in
	// place, and otelhttp names the span by a request's Pattern once the
	// handler returns: the mux below gets a copy, so that the name the
	// REST call gave its span (nameSpan) stays.
	copied := func(w http.ResponseWriter, r *http.Request) { h(w, r.WithContext(r.Context())) }
	return t.HTTPHandler(http.HandlerFunc(copied), func(r *http.Request) bool { return !slices.Contains(operatorPaths, r.URL.Path) })
}

// The operators' endpoints' paths.
const (
	healthzPath = "/healthz"
	readyzPath  = "/readyz"
	metricsPath = "/metrics"
)

// operatorPaths are the paths of the operators' endpoints (operations).
var operatorPaths = []string{healthzPath, readyzPath, metricsPath}

// newMux is the REST gateway, reaching the service through the
// interceptor, in process.
func (g *gateway) newMux(ctx context.Context, opts Options, strict *strictJSON) (*runtime.ServeMux, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, strict),
		// Keeps %2F inside a path segment, so an escaped backup ARN is
		// captured whole as {backup_arn}.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptSlash),
		runtime.WithErrorHandler(g.handleError),
		runtime.WithRoutingErrorHandler(g.routingError),
		runtime.WithIncomingHeaderMatcher(forwardedHeader),
		runtime.SetQueryParameterParser(&queryParser{}),
		runtime.WithMiddlewares(g.keepPathParams),
		// No POST standing in for another method: grpc-gateway's default
		// runs a form-encoded POST as the GET of the same path, and one
		// with X-HTTP-Method-Override as any method, DELETE included,
		// past whatever rules a proxy keeps per method.
		runtime.WithDisablePathLengthFallback(),
	)
	if err := gatewayv1.RegisterBackupServiceHandlerServer(ctx, gw, inProcess(opts.Service, g)); err != nil {
		return nil, fmt.Errorf("register gateway: %w", err)
	}
	return gw, nil
}

// operations serves the operators' endpoints (health, readiness and,
// when set, metrics): GET and HEAD only; health and readiness without a
// caller token, for the probes of load balancers and orchestrators.
func (g *gateway) operations(h Health, metrics http.Handler) *http.ServeMux {
	endpoints := map[string]http.Handler{
		healthzPath: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "ok\n")
		}),
		readyzPath: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			if !h.Ready(r.Context()) {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, "not ready\n")
				return
			}
			_, _ = io.WriteString(w, "ready\n")
		}),
	}
	if metrics != nil {
		endpoints[metricsPath] = g.metricsCallers(metrics)
	}
	mux := http.NewServeMux()
	for _, p := range operatorPaths {
		if endpoints[p] == nil {
			continue
		}
		mux.Handle("GET "+p, unreadBody(endpoints[p]))
		// Without this, another method would fall through to the
		// gateway, whose 404 says the path does not exist.
		mux.Handle(p, track(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.notAllowed(w, r, "GET, HEAD")
		})))
	}
	return mux
}

// metricsCallers serves metrics to the callers allowed them, when
// callers are configured: those allowed config.OpMetrics in every
// account, as the metrics name every account and its rates. A refusal is
// answered as a BackupService call's is (401 with its challenge, or 403)
// and logged and counted under the method "/metrics"; a scrape is not.
func (g *gateway) metricsCallers(metrics http.Handler) http.Handler {
	if g.authz == nil {
		return metrics
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := callerMetadata(r)
		principal, err := g.authz.Authorize(ctx, config.OpMetrics, config.Any)
		if err == nil {
			metrics.ServeHTTP(w, r)
			return
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		ctx = withRestCall(ctx, &restCall{origin: intercept.Origin{Start: start, Caller: "rest:" + host,
			ForwardedFor: r.Header.Get("X-Forwarded-For")}})
		l := intercept.Line{Method: metricsPath, Principal: principal}
		st := l.Fail(ctx, err)
		g.ic.Write(ctx, l, start)
		if challenge, ok := callers.ChallengeOf(err); ok {
			w.Header().Set("WWW-Authenticate", challenge)
		}
		writeStatus(w, st, runtime.HTTPStatusFromCode(st.Code()))
	})
}

// unreadBody answers GET requests that need no body, and take no token,
// without reading one they may have: net/http would otherwise read it to
// its end before the answer, for as long as it takes to come, holding a
// shutdown's drain. The connection is closed after the answer.
func unreadBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			closeUnread(w, r)
		}
		h.ServeHTTP(w, r)
	})
}

// cleanPath is p as http.ServeMux would redirect it: rooted, without
// empty, "." or ".." elements, keeping a trailing slash.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// fieldRules names what a request's RPC refuses in its fields: one
// field violation per bad field. unread are the violations of the fields
// the gateway could not read, which req holds empty: they are not
// returned, nor is what depends on them judged (a table ARN by a region);
// but the fields' own rules may still name them (a backup_name sent as a
// number reads as missing), so the caller drops those (badrequest.Beside).
type fieldRules func(req proto.Message, unread ...badrequest.Violation) []badrequest.Violation

// fieldsOnly is the field rules of a server that is given none: the
// fields' own, which know no account.
func fieldsOnly(req proto.Message, _ ...badrequest.Violation) []badrequest.Violation {
	return service.Violations(req)
}

// forwardedHeader passes on, as gRPC metadata, only the request headers the
// service reads besides Authorization, which the gateway always passes on
// as "authorization" itself (forwarding it here too would make every token
// arrive twice): a request id for correlation. The default forwards every
// standard header, which costs allocations on every call and hands the
// service headers nobody reads.
func forwardedHeader(key string) (string, bool) {
	if key == "X-Request-Id" {
		return "x-request-id", true
	}
	return "", false
}

// NewServer wraps h in an http.Server with every timeout set, so a slow
// or idle client cannot hold a connection open forever. handling bounds a
// request's work once its body is in, upstream call included. tlsCfg,
// when not nil, serves HTTPS (see Serve). log, when not nil, takes
// net/http's own messages (a failed TLS handshake, say) as warnings, in
// the same format as every other line, instead of plain text on stderr,
// failed handshakes capped by a Capper of caps (see cappedLog).
func NewServer(h http.Handler, handling time.Duration, tlsCfg *tls.Config, log *slog.Logger, caps *logcap.Group) *http.Server {
	srv := newHTTPServer(h, bodyReadTimeout, handling, tlsCfg, log, caps)
	newBodyReads(drainGrace).watch(srv)
	closeNewOnShutdown(srv)
	return srv
}

// bodyReadTimeout bounds reading a request, body included: 64 KiB at most.
const bodyReadTimeout = intercept.ArrivalTimeout

// drainGrace is how long a request still arriving when the servers shut
// down has left to arrive.
const drainGrace = intercept.DrainGrace

// newHTTPServer is NewServer with the time a request may take to
// arrive. net/http starts the write deadline once a request's headers are
// read, so the body's arrival comes out of it: it is the read timeout plus
// handling, or a request whose body came slowly would run and its answer
// be cut off, and one whose body never came would be closed without its
// 400.
func newHTTPServer(h http.Handler, read, handling time.Duration, tlsCfg *tls.Config, log *slog.Logger, caps *logcap.Group) *http.Server {
	var errorLog *stdlog.Logger
	if log != nil {
		errorLog = stdlog.New(cappedLog{log: log, cap: caps.New(10 * time.Second)}, "", 0)
	}
	return &http.Server{
		ErrorLog:          errorLog,
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: intercept.HandshakeTimeout,
		ReadTimeout:       read,
		WriteTimeout:      read + handling,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    intercept.MaxHeaderBytes,
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

// newStrictJSON writes every field that has no presence of its own, so a
// response's shape does not depend on its values: an empty list is [], not
// missing, and a false bool is false. Fields with presence (optional
// scalars, messages) stay absent while unset, as the contract says: absent
// means unknown.
func newStrictJSON() *strictJSON {
	return &strictJSON{runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{EmitDefaultValues: true}}}
}

// Marshal writes an error's google.rpc.Status without its empty fields: a
// detail's field newer than a client's copy of google/rpc (BadRequest's
// FieldViolation.reason, say) makes a strict JSON parser refuse the whole
// body, and empty it says nothing.
func (m *strictJSON) Marshal(v any) ([]byte, error) {
	if st, ok := v.(*spb.Status); ok {
		return protojson.MarshalOptions{}.Marshal(st)
	}
	return m.JSONPb.Marshal(v)
}

// NewDecoder keeps, in the request's restCall, the field violations of the
// body it decoded: those protojson refused, for the error handler (the
// generated code keeps only the text of a decoding error), and the path
// fields the body contradicts, for restRefusal.
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
		if len(bytes.Trim(data, jsonSpace)) == 0 {
			return io.EOF // an empty body is an empty request
		}
		err = protojson.Unmarshal(data, msg)
		if lb, ok := r.(*limitedBody); ok {
			if err != nil {
				lb.call.refusedBody = &refusedBody{msg: msg, data: data}
			} else {
				lb.call.pathConflicts = pathConflicts(msg, lb.call.params)
			}
		}
		return err
	})
}

// jsonSpace is JSON's whitespace (RFC 8259): not \v, \f or Unicode's
// spaces, which bytes.TrimSpace also takes.
const jsonSpace = " \t\r\n"

func (m *strictJSON) Unmarshal(data []byte, v any) error {
	if msg, ok := v.(proto.Message); ok {
		return protojson.Unmarshal(data, msg)
	}
	return m.JSONPb.Unmarshal(data, v)
}

// cappedLog writes net/http's own messages as warnings, a failed TLS
// handshake at most once per interval (cap), with how many were left out
// since the last: each connection that does not finish its handshake (a
// plaintext client, one without a client certificate, or a tcpSocket
// probe, which connects and closes) gives one, and anyone who can reach
// the port could otherwise fill the log with them.
type cappedLog struct {
	log *slog.Logger
	cap *logcap.Capper
}

// handshakeError starts net/http's message for a failed TLS handshake.
const handshakeError = "http: TLS handshake error"

func (c cappedLog) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	var attrs []slog.Attr
	if strings.HasPrefix(msg, handshakeError) {
		if strings.HasSuffix(msg, net.ErrClosed.Error()) {
			// A connection closed under its handshake was closed by
			// backupd (closeNewOnShutdown, at the drain): not the
			// client's failure, as on the gRPC listener
			// (server.loggedCredentials).
			return len(p), nil
		}
		leftOut, ok := c.cap.Admit(handshakeError, time.Now())
		if !ok {
			return len(p), nil
		}
		attrs = logcap.LeftOut(leftOut)
	}
	c.log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
	return len(p), nil
}
