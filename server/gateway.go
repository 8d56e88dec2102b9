package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/rpcerror"
)

// MaxBodyBytes bounds a REST request body; larger ones get 413.
const MaxBodyBytes = 64 << 10

// NewHTTPHandler serves the REST API, /healthz, /readyz and, when metrics
// is not nil, GET /metrics. The REST API calls svc in process; pass
// InProcess's result so that REST requests pass the same interceptor as
// gRPC ones.
func NewHTTPHandler(ctx context.Context, svc backupv1.BackupServiceServer, h *Health, metrics http.Handler) (http.Handler, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &strictJSON{}),
		// Keeps %2F inside a path segment, so an escaped backup ARN is
		// captured whole as {backup_arn}.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptSlash),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithIncomingHeaderMatcher(forwardedHeader),
	)
	if err := backupv1.RegisterBackupServiceHandlerServer(ctx, gw, svc); err != nil {
		return nil, fmt.Errorf("register gateway: %w", err)
	}
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
	mux.Handle("/", limitBody(gw))
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
		if len(data) == 0 {
			return io.EOF // an empty body is an empty request
		}
		return protojson.Unmarshal(data, msg)
	})
}

func (m *strictJSON) Unmarshal(data []byte, v any) error {
	if msg, ok := v.(proto.Message); ok {
		return protojson.Unmarshal(data, msg)
	}
	return m.JSONPb.Unmarshal(data, v)
}

type bodyTooLargeKey struct{}

// limitBody refuses bodies over MaxBodyBytes with 413: at once when the
// length is declared, or when reading passes the limit. grpc-gateway turns
// read errors into InvalidArgument, so the error handler learns of the
// overflow through a flag in the request's context.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			writeTooLarge(w)
			return
		}
		tooLarge := new(bool)
		r = r.WithContext(context.WithValue(r.Context(), bodyTooLargeKey{}, tooLarge))
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, MaxBodyBytes), tooLarge: tooLarge}
		next.ServeHTTP(w, r)
	})
}

type limitedBody struct {
	io.ReadCloser
	tooLarge *bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		*b.tooLarge = true
	}
	return n, err
}

func writeTooLarge(w http.ResponseWriter) {
	st := status.New(codes.InvalidArgument, fmt.Sprintf("request body must be at most %d bytes", MaxBodyBytes))
	st, _ = st.WithDetails(&errdetails.ErrorInfo{Domain: rpcerror.Domain, Reason: "BODY_TOO_LARGE"})
	writeStatus(w, st, http.StatusRequestEntityTooLarge)
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

// errorHandler adds what grpc-gateway's default leaves out: Retry-After from
// RetryInfo, 413 for oversized bodies, and an ErrorInfo on the gateway's own
// decoding errors, so every REST error has the same shape as a gRPC one.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if tooLarge, _ := r.Context().Value(bodyTooLargeKey{}).(*bool); tooLarge != nil && *tooLarge {
		writeTooLarge(w)
		return
	}
	st := status.Convert(err)
	if len(st.Details()) == 0 && st.Code() == codes.InvalidArgument {
		// grpc-gateway's own: malformed JSON, wrong types, bad path or query values.
		withInfo, derr := status.New(codes.InvalidArgument, "malformed request: "+st.Message()).
			WithDetails(&errdetails.ErrorInfo{Domain: rpcerror.Domain, Reason: "MALFORMED_REQUEST"})
		if derr == nil {
			st = withInfo
		}
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			secs := math.Ceil(ri.GetRetryDelay().AsDuration().Seconds())
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(secs))))
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, st.Err())
}

func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	code, reason := codes.NotFound, "ROUTE_NOT_FOUND"
	msg := fmt.Sprintf("no route for %s %s; see the API reference", r.Method, r.URL.Path)
	if httpStatus == http.StatusMethodNotAllowed {
		code, reason = codes.Unimplemented, "METHOD_NOT_ALLOWED"
		msg = fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)
	}
	st, _ := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Domain: rpcerror.Domain, Reason: reason})
	if httpStatus == http.StatusMethodNotAllowed {
		writeStatus(w, st, httpStatus)
		return
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, st.Err())
}
