package rest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/intercept"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/service"
)

// refusal is the status of a request the gateway refuses on its own, in
// account when the request names one.
func refusal(code codes.Code, reason, msg, account string) *status.Status {
	st, _ := rpcerror.Status(&rpcerror.RequestError{Code: code, Reason: reason, Msg: msg}, rpcerror.Request{AccountID: account})
	return st
}

// tooLarge is the status of a REST body over MaxBodyBytes.
func tooLarge(account string) *status.Status {
	return refusal(codes.InvalidArgument, rpcerror.ReasonBodyTooLarge, fmt.Sprintf("request body must be at most %d bytes", MaxBodyBytes), account)
}

// shuttingDown is the status of a REST request whose body had not arrived
// when the server began to shut down, and was given up on.
func shuttingDown(account string) *status.Status {
	st, _ := rpcerror.Status(errShuttingDown, rpcerror.Request{AccountID: account})
	return st
}

// errShuttingDown answers a REST request whose body the shutdown gave up
// on; its line is INFO, as rpcerror.Level logs a refusal of
// ReasonShuttingDown.
var errShuttingDown = &rpcerror.RequestError{Code: codes.Unavailable, Reason: rpcerror.ReasonShuttingDown,
	Msg:        "backupd is shutting down and the request's body had not arrived: nothing was done; send the request again",
	RetryAfter: rpcerror.DefaultRetryAfter}

func writeStatus(w http.ResponseWriter, st *status.Status, code int) {
	body, err := protojson.Marshal(st.Proto())
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"code":13,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// gateway handles the errors of grpc-gateway's handlers.
type gateway struct {
	// ic is the interceptor the gateway's calls pass through, made as
	// the gRPC server's (server.NewGRPC), for which the gateway logs and
	// counts the requests it refuses before they reach it.
	ic    *intercept.Interceptor
	authz Authorizer
	log   *slog.Logger
	// violations names what a request's RPC refuses in its fields, for
	// requests read only in part (Options.Violations). It is asked only
	// once the caller may act in the request's account, as what it says
	// of an account's regions is for those callers alone.
	violations fieldRules
	mux        *runtime.ServeMux
}

// handleError adds what grpc-gateway's default leaves out: Retry-After from
// RetryInfo, an RFC 6750 challenge as a 401's WWW-Authenticate (the
// default copies the status message there), 413 for oversized bodies, and
// an ErrorInfo and field violations on the gateway's own decoding errors,
// so every REST error has the same shape as a gRPC one. A request refused
// before it reached the interceptor is logged and counted here.
func (g *gateway) handleError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	call := restCallOf(r.Context()) // set by track
	account, region := pathTarget(call.params)
	if _, ok := status.FromError(err); !ok && call.intercepted {
		g.unwritable(ctx, mux, m, w, r, err, account)
		return
	}
	line, authErr, checked := g.checkCaller(ctx, call, account, region)
	st, logged, tooBig := errorStatus(ctx, r, call, err, authErr, account, g.violations)
	if checked {
		line.Err = logged
		g.ic.Record(ctx, line)
		nameSpan(ctx, line.Method)
	}
	if tooBig {
		writeStatus(w, st, http.StatusRequestEntityTooLarge)
		return
	}
	writeError(ctx, mux, m, w, r, st, call.challenge)
}

// checkCaller checks the caller of a request refused before it reached
// the interceptor, as the interceptor does, so that an unknown caller
// learns nothing about the request's shape and costs no more than the
// reading of it. It returns the request's log record, its err left to
// fill, and the caller's refusal; checked is false when the interceptor
// has checked, logged and counted the request, or ctx names no RPC.
func (g *gateway) checkCaller(ctx context.Context, call *restCall, account, region string) (line intercept.Finished, authErr error, checked bool) {
	method, ok := runtime.RPCMethod(ctx)
	if !ok || call.intercepted {
		return intercept.Finished{}, nil, false
	}
	principal, authErr := g.ic.AuthorizeIn(ctx, method, account)
	return intercept.Finished{Method: method, Account: account, Region: region, Principal: principal, Start: call.origin.Start}, authErr, true
}

// unwritable answers a call the interceptor ran whose answer grpc-gateway
// could not write (protojson refused it: a time out of its range, say).
// The interceptor's line says how the call ended; this one that its
// caller got INTERNAL, as DESIGN says of the unexpected, with the generic
// message.
func (g *gateway) unwritable(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error, account string) {
	method, _ := runtime.RPCMethod(ctx)
	g.log.LogAttrs(ctx, slog.LevelError, "REST: the answer could not be written; the caller got INTERNAL",
		slog.String("method", method), slog.String("account", account), slog.String("error", redact.Error(err)))
	st, _ := rpcerror.Status(err, rpcerror.Request{AccountID: account})
	writeError(ctx, mux, m, w, r, st, "")
}

// errorStatus is the status a REST error is answered with, the error its
// log line is made from, and whether it is answered 413 rather than as
// its code maps. A caller refused (authErr) is told only that; otherwise
// a body the gateway gave up on (too large, cut short by the shutdown,
// late, or ended early) is named, and grpc-gateway's own decoding errors
// are made malformed's.
func errorStatus(ctx context.Context, r *http.Request, call *restCall, err, authErr error, account string, violations fieldRules) (st *status.Status, logged error, tooBig bool) {
	switch {
	case authErr != nil:
		st, _ = rpcerror.Status(authErr, rpcerror.Request{AccountID: account})
		return st, authErr, false // the log's level tells a caller refused from AWS refusing backupd
	case call.tooLarge:
		st = tooLarge(account)
	case call.cutShort:
		st = shuttingDown(account)
	case call.bodyLate:
		st = refusal(codes.InvalidArgument, rpcerror.ReasonMalformed, fmt.Sprintf(
			"the request body did not arrive within %s of the request's start; send it whole, at once", bodyReadTimeout), account)
	case call.bodyEnded:
		// Counted with the calls whose callers left, not as a caller's
		// mistake: the client that closed its connection hears nothing.
		st = refusal(codes.Canceled, rpcerror.ReasonCanceled, "the request body ended before all of it arrived "+
			"(short of its Content-Length, or without a chunked body's last chunk): the client closed the connection "+
			"or sent less than it announced; nothing was done", account)
	default:
		st = status.Convert(err)
		if len(st.Details()) == 0 && st.Code() == codes.InvalidArgument {
			st = malformed(ctx, r, call, st, account, violations)
		}
	}
	logged = st.Err()
	if call.cutShort {
		logged = errShuttingDown // logged as the shutdown's, not as a fault
	}
	return st, logged, call.tooLarge
}

// writeError writes st as grpc-gateway's default error handler does, with
// Retry-After from its RetryInfo, and a 401's challenge (or the bare
// realm, should a refusal ever come without one) as WWW-Authenticate
// rather than the status message.
func writeError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, st *status.Status, challenge string) {
	if d, ok := rpcerror.RetryDelay(st); ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
	}
	if st.Code() == codes.Unauthenticated {
		w = challengeWriter{ResponseWriter: w, challenge: cmp.Or(challenge, `Bearer realm="backupd"`)}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, st.Err())
}

// malformed gives one of grpc-gateway's own errors (malformed JSON, unknown
// fields, wrong types, bad path or query values) an ErrorInfo, and field
// violations when it can name the fields. Its generated code keeps only
// the text of the decoder's and queryParser's errors, so the violations
// are found again here, the body's from what the decoder kept of it.
func malformed(ctx context.Context, r *http.Request, call *restCall, st *status.Status, account string, violations fieldRules) *status.Status {
	var vs []badrequest.Violation
	if rb := call.refusedBody; rb != nil {
		vs = bodyViolations(rb.msg.ProtoReflect().Descriptor(), rb.data, call.params)
		if len(vs) > 0 {
			vs = append(vs, alsoWrong(rb.msg, rb.data, vs, call.params, violations)...)
		}
	}
	if len(vs) == 0 {
		vs = requestViolations(ctx, r, call, violations)
	}
	if len(vs) > 0 {
		// And what the interceptor's REST checks would have named (a
		// query on a route that takes none, a bad Grpc-Timeout), which
		// a refused body never reaches.
		if method, ok := runtime.RPCMethod(ctx); ok {
			if bad, ok := errors.AsType[*badrequest.Error](restRefusal(r.Context(), method)); ok {
				vs = append(vs, badrequest.Beside(vs, bad.Violations)...)
			}
		}
		st, _ := rpcerror.Status(&badrequest.Error{Violations: vs}, rpcerror.Request{AccountID: account})
		return st
	}
	msg := st.Message()
	if detail, ok := protoDetail(msg); ok { // protojson could not decode the body
		msg = "the body is not one JSON object of the request's fields (" + detail +
			"); send one JSON object, its fields named in lowerCamelCase as the OpenAPI description lists them"
		if rb := call.refusedBody; rb != nil {
			if m := byteOrderMark(rb.data); m != "" {
				msg = m
			}
		}
	}
	return refusal(codes.InvalidArgument, rpcerror.ReasonMalformed, "malformed request: "+redact.Cut(msg, 1024), account)
}

// utf8BOM is the byte order mark some Windows tools write before UTF-8.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// byteOrderMark says what is wrong with a body that begins with a byte
// order mark, or "": protojson's own words would quote the mark, which no
// terminal shows, or the U+FFFD it makes of UTF-16's. Windows tools write
// UTF-16 with a mark (PowerShell 5's Out-File) as readily as UTF-8 with
// one, and a script may put whitespace before either.
func byteOrderMark(body []byte) string {
	switch {
	case bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), utf8BOM):
		return "the body starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON does not allow; send the JSON without it"
	case bytes.HasPrefix(body, []byte{0xFF, 0xFE}), bytes.HasPrefix(body, []byte{0xFE, 0xFF}):
		return fmt.Sprintf("the body starts with a UTF-16 byte order mark (bytes % X): it is not UTF-8, which JSON must be; send it as UTF-8, without a mark", body[:2])
	}
	return ""
}

// protoDetail is what a protobuf error message says after its "proto:"
// prefix, which the protobuf module follows with a space or, at random, a
// no-break space (so that no one depends on its text).
func protoDetail(msg string) (string, bool) {
	detail, ok := strings.CutPrefix(msg, "proto:")
	return strings.TrimLeft(detail, " \u00a0"), ok
}

// pathTarget names, for the log, the account and region of a REST request's
// path: its {account_id}, or the account and region of its {backup_arn}.
func pathTarget(params map[string]string) (account, region string) {
	if arn, ok := params["backup_arn"]; ok {
		account, region = service.ARNTarget(arn)
	} else {
		account = params["account_id"]
	}
	return intercept.AccountOrNone(account), intercept.RegionOrNone(region)
}

// routingError answers a request that matched no route (404) or a route
// of another method (405, with the Allow header RFC 9110 asks for), and
// logs and counts it under the method "unknown", so callers cannot add
// label values.
func (g *gateway) routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if _, ok := r.Context().Value(probeKey{}).(*probe); ok {
		return
	}
	path := badrequest.Quote(r.URL.Path)
	code, reason := codes.NotFound, rpcerror.ReasonRouteNotFound
	method := redact.Cut(r.Method, intercept.MaxMethodEcho) // a method may be up to the 64 KiB of the headers
	msg := fmt.Sprintf("no route for %s %s; see the API reference", method, path)
	if hint := escapeHint(r.URL.EscapedPath()); hint != "" {
		// A client that did escape it meets this too when a proxy on the
		// way decodes %2F (nginx's proxy_pass with a URI does; see the
		// operations guide).
		msg = fmt.Sprintf("no route for %s %s: %s goes in the path as one segment, with each / escaped as %%2F "+
			"(if the client sent %%2F, a proxy on the way decoded it: it must pass the path on as it came)", method, path, hint)
	} else if strings.Contains(r.URL.EscapedPath(), "//") {
		// A base URL ending in / joined to a path starting with / makes
		// one; the message would otherwise look like a valid route's.
		msg = fmt.Sprintf("no route for %s %s: the path has an empty segment (//); "+
			"if the base URL ends in /, drop that / or the path's first", method, path)
	}
	if rpc, params, verb, ok := g.emptyVariables(r); ok {
		g.emptyPathFields(w, r, rpc, params, verb)
		return
	}
	if httpStatus == http.StatusNotFound {
		// A route's path with a variable empty, asked with a method the
		// route does not take, is that route's, as when it is filled.
		if _, _, filled := fillEmpty(r.URL.EscapedPath()); filled {
			if methods, _, _ := g.allowed(r); len(methods) > 0 {
				httpStatus = http.StatusMethodNotAllowed
			}
		}
	}
	var account, region string
	if httpStatus == http.StatusMethodNotAllowed {
		methods, params, verb := g.allowed(r)
		account, region = pathTarget(params)
		w.Header().Set("Allow", strings.Join(methods, ", "))
		code, reason = codes.Unimplemented, rpcerror.ReasonMethodNotAllowed
		msg = fmt.Sprintf("method %s is not allowed on %s; it takes %s", method, path, strings.Join(methods, ", "))
		switch {
		case verb == "restore":
			msg += "; a restore is POST …{backup_arn}:restore, and GET and DELETE take …{backup_arn} without :restore"
		case strings.Contains(strings.ToLower(r.URL.EscapedPath()), "%3arestore"):
			msg += "; a restore is POST …{backup_arn}:restore, with the colon before restore unescaped"
		}
	}
	st := refusal(code, reason, msg, account)
	g.logRouting(r, code, reason, account, region)
	closeUnread(w, r) // no route reads its body
	if httpStatus == http.StatusMethodNotAllowed {
		writeStatus(w, st, httpStatus)
		return
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, st.Err())
}

// emptyPathFields answers a request whose route has an empty variable,
// which grpc-gateway does not match (POST /v1/backups/:restore, POST
// /v1/accounts/111111111111/tables//backups, a script whose $ARN or
// $TABLE came out empty): as the route's RPC with those fields empty, whose
// caller is checked first and which is then refused as the service
// refuses an empty field, logged and counted under its method; not as a
// path no route takes, or the method not allowed on the path of the
// routes the request did match.
func (g *gateway) emptyPathFields(w http.ResponseWriter, r *http.Request, method string, params map[string]string, verb string) {
	call := restCallOf(r.Context()) // set by track
	md := metadata.MD{"authorization": r.Header.Values("Authorization")}
	if id := r.Header.Get("X-Request-Id"); id != "" {
		md.Set("x-request-id", id) // the log line's correlation id, as logRouting gives it
	}
	ctx := metadata.NewIncomingContext(r.Context(), md)
	account := params["account_id"] // a backup ARN's is empty
	principal, err := g.ic.AuthorizeIn(ctx, method, account)
	if err == nil {
		where := "it goes in the path"
		if verb != "" {
			where += ", before :" + verb
		}
		var vs []badrequest.Violation
		for _, name := range slices.Sorted(maps.Keys(params)) {
			if params[name] == "" {
				vs = append(vs, badrequest.Violation{Field: name, Description: fmt.Sprintf("%s is required: %s", name, where)})
			}
		}
		err = &badrequest.Error{Violations: append(vs, filledPathViolations(method, params)...)}
	}
	st := g.ic.Record(ctx, intercept.Finished{Method: method, Account: account, Principal: principal, Start: call.origin.Start, Err: err})
	nameSpan(ctx, method)
	closeUnread(w, r)
	if st.Code() == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", cmp.Or(call.challenge, `Bearer realm="backupd"`))
	}
	writeStatus(w, st, runtime.HTTPStatusFromCode(st.Code()))
}

// filledPathViolations is what method's own validation refuses in the
// path parameters that are not empty. The body and query are left unread,
// so the request's other fields are not judged: they would read as
// missing.
func filledPathViolations(method string, params map[string]string) []badrequest.Violation {
	req := requestOf(method)
	if req == nil {
		return nil
	}
	var filled []string
	for name, value := range params {
		if value != "" {
			if runtime.PopulateFieldFromPath(req, name, value) != nil {
				return nil
			}
			filled = append(filled, name)
		}
	}
	var vs []badrequest.Violation
	for _, v := range service.Violations(req) {
		if slices.ContainsFunc(filled, func(name string) bool { return badrequest.Within(v.Field, name) }) {
			vs = append(vs, v)
		}
	}
	return vs
}

// emptySegment stands in a path for an empty variable while the router is
// asked which route the path names (fillEmpty): NULs around a name, which
// no path parameter backupd takes holds. dotSegment and dotDotSegment
// stand in for a variable of "." or "..", which the router does not take
// either: a path's dot segments, which most clients remove before
// sending (RFC 3986), and which reach backupd only from those that do not.
const (
	emptySegment  = "%00empty%00"
	emptyValue    = "\x00empty\x00"
	dotSegment    = "%00dot%00"
	dotValue      = "\x00dot\x00"
	dotDotSegment = "%00dotdot%00"
	dotDotValue   = "\x00dotdot\x00"
)

// fillEmpty is the escaped path with its empty segments filled: one
// between two slashes, or before a verb (/v1/backups/:restore); and its
// dot segments (. and ..) too. ok is false when it has none, or more
// segments than any route: no route takes it, filled or not, and a path
// of thousands of empty segments, each made 11 bytes and asked of the
// router for every method, cost 50 ms of CPU before its caller was
// known.
func fillEmpty(escaped string) (path, raw string, ok bool) {
	if strings.Count(escaped, "/") > maxRouteSegments {
		return "", "", false
	}
	segs := strings.Split(escaped, "/")
	for i := 1; i < len(segs); i++ {
		last := i == len(segs)-1
		switch {
		case segs[i] == "" && !last:
			segs[i], ok = emptySegment, true
		case last && strings.HasPrefix(segs[i], ":") && endsInVerb(escaped):
			segs[i], ok = emptySegment+segs[i], true
		case segs[i] == ".":
			segs[i], ok = dotSegment, true
		case segs[i] == "..":
			segs[i], ok = dotDotSegment, true
		}
	}
	if !ok {
		return "", "", false
	}
	raw = strings.Join(segs, "/")
	path, err := url.PathUnescape(raw)
	return path, raw, err == nil
}

// emptyVariables finds the route of r's method that r's path names once
// its empty segments are filled (fillEmpty). It returns the route's RPC,
// its path parameters (the empty ones as ""), and its verb; ok is false
// when no route of r's method takes the path so, or none of its variables
// is empty.
func (g *gateway) emptyVariables(r *http.Request) (rpc string, params map[string]string, verb string, ok bool) {
	path, raw, ok := fillEmpty(r.URL.EscapedPath())
	if !ok {
		return "", nil, "", false
	}
	p := g.match(r, r.Method, path, raw)
	rpc, known := routeMethods[r.Method+" "+p.template]
	if !p.matched || !known {
		return "", nil, "", false
	}
	return rpc, p.params, p.verb, emptied(p.params)
}

// emptied sets the parameters fillEmpty filled to what they stood for
// ("", "." or ".."), and reports whether there were any.
func emptied(params map[string]string) bool {
	any := false
	for name, value := range params {
		if v, ok := filledValues[value]; ok {
			params[name], any = v, true
		}
	}
	return any
}

// filledValues are the values fillEmpty's segments stand for.
var filledValues = map[string]string{emptyValue: "", dotValue: ".", dotDotValue: ".."}

// routeMethods are the RPCs of the REST routes, by method and path
// template, as proto/backup/v1/backup_service.yaml binds them.
var routeMethods = map[string]string{
	"POST /v1/accounts/{account_id}/tables/{table_name}/backups": backupv1.BackupService_CreateBackup_FullMethodName,
	"GET /v1/backups/{backup_arn}":                               backupv1.BackupService_GetBackup_FullMethodName,
	"GET /v1/accounts/{account_id}/backups":                      backupv1.BackupService_ListBackups_FullMethodName,
	"DELETE /v1/backups/{backup_arn}":                            backupv1.BackupService_DeleteBackup_FullMethodName,
	"POST /v1/backups/{backup_arn}:restore":                      backupv1.BackupService_RestoreTableFromBackup_FullMethodName,
}

// maxRouteSegments is the most segments the path of a route has
// (routeMethods): each variable is one segment.
var maxRouteSegments = func() int {
	most := 0
	for route := range routeMethods {
		_, template, _ := strings.Cut(route, " ")
		most = max(most, strings.Count(template, "/"))
	}
	return most
}()

// notAllowed answers a method that an endpoint beside the API (health,
// metrics) does not take, as routingError answers one an API route does
// not take: logged and counted under "unknown", and without waiting for a
// body.
func (g *gateway) notAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	msg := fmt.Sprintf("method %s is not allowed on %s; it takes %s", redact.Cut(r.Method, intercept.MaxMethodEcho), badrequest.Quote(r.URL.Path), allow)
	st := refusal(codes.Unimplemented, rpcerror.ReasonMethodNotAllowed, msg, "")
	g.logRouting(r, codes.Unimplemented, rpcerror.ReasonMethodNotAllowed, "", "")
	closeUnread(w, r)
	w.Header().Set("Allow", allow)
	writeStatus(w, st, http.StatusMethodNotAllowed)
}

// escapeHint names the ARN that an unmatched escaped path seems to carry
// with its slashes unescaped: a backup ARN in /v1/backups/…, a table ARN
// in /v1/accounts/{account_id}/tables/…. It is "" for other paths.
func escapeHint(escapedPath string) string {
	if arn, ok := strings.CutPrefix(escapedPath, "/v1/backups/"); ok && strings.Contains(arn, "/") {
		return "a backup ARN"
	}
	if rest, ok := strings.CutPrefix(escapedPath, "/v1/accounts/"); ok {
		_, table, ok := strings.Cut(rest, "/tables/")
		lower := strings.ToLower(table)
		isARN := strings.HasPrefix(lower, "arn:") || strings.HasPrefix(lower, "arn%3a")
		if ok && isARN && strings.Count(table, "/") > 1 {
			return "a table ARN"
		}
	}
	return ""
}

// logRouting writes the log line of a request that matched no route, and
// counts it.
func (g *gateway) logRouting(r *http.Request, code codes.Code, reason, account, region string) {
	call := restCallOf(r.Context())
	ctx := r.Context()
	if id := r.Header.Get("X-Request-Id"); id != "" {
		// No route ran, so the gateway did not turn the header into metadata.
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-request-id", id))
	}
	g.ic.Write(ctx, intercept.Line{Method: "unknown", Route: redact.Cut(r.Method+" "+r.URL.Path, intercept.MaxMethodEcho),
		Account: account, Region: region, Code: code, Reason: reason, Unknown: true}, call.origin.Start)
}

type probeKey struct{}

// probe marks a request that only asks whether a route matches, and
// which path parameters and custom verb the route has.
type probe struct {
	matched bool
	params  map[string]string
	verb    string
	// template is the route's path as its HTTP rule writes it
	// (/v1/backups/{backup_arn}:restore).
	template string
}

// allowed lists the methods r's path has a route for, and the path
// parameters and custom verb of the first. It asks the gateway's own
// router, with each method, whether a route matches; a probe stops at the
// match (keepPathParams), so no handler runs. A path whose last segment
// ends in a route's verb is that route's path: a route without the verb
// matches it too, its last variable taking in the verb (GET
// /v1/backups/{backup_arn} matches …:restore), but only the methods of
// the routes with the verb are listed. A path with a variable empty, such
// as a verb with nothing before it (/v1/backups/:restore), is the path of
// its route with that variable filled (fillEmpty), which no route matches
// as it is: that route's methods are listed, and empty is the variable it
// names.
func (g *gateway) allowed(r *http.Request) (methods []string, params map[string]string, verb string) {
	methods, params, verb = g.probe(r, r.URL.Path, r.URL.RawPath)
	escaped := r.URL.EscapedPath()
	seg := escaped[strings.LastIndexByte(escaped, '/')+1:]
	beforeVerb := verb == "" && strings.HasPrefix(seg, ":") && endsInVerb(escaped)
	if len(methods) > 0 && !beforeVerb {
		return methods, params, verb
	}
	path, raw, ok := fillEmpty(escaped)
	if !ok {
		return methods, params, verb
	}
	fm, fp, fv := g.probe(r, path, raw)
	if len(methods) > 0 && fv == "" {
		return methods, params, verb // a route without the verb took it in; none with it matched
	}
	emptied(fp)
	return fm, fp, fv
}

// probe is allowed for one path, escaped as rawPath.
func (g *gateway) probe(r *http.Request, path, rawPath string) (methods []string, params map[string]string, verb string) {
	var plain []string
	var plainParams map[string]string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		p := g.match(r, m, path, rawPath)
		switch {
		case !p.matched:
		case p.verb != "":
			methods = append(methods, m)
			if params == nil {
				params, verb = p.params, p.verb
			}
		default:
			plain = append(plain, m)
			if plainParams == nil {
				plainParams = p.params
			}
		}
	}
	if len(methods) == 0 {
		return plain, plainParams, ""
	}
	return methods, params, verb
}

// match asks the gateway's router which route of method takes path,
// escaped as rawPath; a probe stops at the match (keepPathParams).
func (g *gateway) match(r *http.Request, method, path, rawPath string) *probe {
	p := &probe{}
	pr := r.Clone(context.WithValue(r.Context(), probeKey{}, p))
	pr.Method, pr.Body, pr.ContentLength = method, http.NoBody, 0
	pr.URL.Path, pr.URL.RawPath = path, rawPath
	g.mux.ServeHTTP(discardResponse{}, pr)
	return p
}

// discardResponse is a ResponseWriter that keeps nothing.
type discardResponse struct{}

func (discardResponse) Header() http.Header         { return http.Header{} }
func (discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (discardResponse) WriteHeader(int)             {}
