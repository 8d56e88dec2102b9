package server

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/service"
)

// deferringCodec is grpc-go's proto codec, except that a BackupService
// request it cannot take (over maxRequestBytes, or not decodable: invalid
// UTF-8 in a string, a truncated message) reaches the interceptor as an
// empty request and a status kept for it. grpc-go itself answers such a
// request before any interceptor runs (INTERNAL "failed to unmarshal",
// RESOURCE_EXHAUSTED for its size limit), so it was neither logged nor
// counted, and its caller was told the fault was backupd's, or to retry.
// Only BackupService's requests are deferred: all its methods are unary,
// so the interceptor takes a kept status, unless the stream ends badly
// before the interceptor runs (a second request message, a reset). Such
// leftovers are swept once they are staleAfter old.
type deferringCodec struct {
	encoding.CodecV2
	failed    sync.Map // proto.Message → deferred
	kept      atomic.Int64
	lastSweep atomic.Int64 // Unix nanoseconds
	now       func() time.Time
}

// deferred is a status kept for a request, and when.
type deferred struct {
	st *status.Status
	at time.Time
}

// staleAfter is how long a kept status waits for its interceptor: far
// longer than decoding takes to reach it.
const staleAfter = 10 * time.Second

func newDeferringCodec() *deferringCodec {
	return &deferringCodec{CodecV2: encoding.GetCodecV2(protocodec.Name), now: time.Now}
}

func (c *deferringCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ours := v.(proto.Message)
	ours = ours && m.ProtoReflect().Descriptor().ParentFile() == backupv1.File_backup_v1_backup_service_proto
	if n := data.Len(); ours && n > maxRequestBytes {
		st, _ := rpcerror.Status(&rpcerror.RequestError{Code: codes.InvalidArgument, Reason: rpcerror.ReasonBodyTooLarge,
			Msg: fmt.Sprintf("request message must be at most %d bytes; got %d", maxRequestBytes, n)}, rpcerror.Request{})
		c.keep(m, st)
		return nil
	}
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil || !ours {
		return err
	}
	proto.Reset(m)
	c.keep(m, undecodable(m, data, err))
	return nil
}

// undecodable is the status of a request like m that protobuf could not
// decode: the strings that are not UTF-8, each named as REST names them,
// beside what the RPC's own validation refuses in its other fields; or
// else what protobuf said.
func undecodable(m proto.Message, data mem.BufferSlice, err error) *status.Status {
	md := m.ProtoReflect().Descriptor()
	raw := data.Materialize()
	w := utf8Walk{limit: rpcerror.MaxViolations}
	if w.walk(md, raw); len(w.vs) > 0 {
		vs := w.vs
		// The codec runs before the interceptor knows the caller: the
		// rest is judged for a request of REST's size at most, whose
		// violations of UTF-8 were all named, and by the same paths
		// (not one whose message field came twice, merged).
		if valid := m.ProtoReflect().New().Interface(); w.more == 0 && !w.merged && len(raw) <= maxRevalidatedBytes &&
			proto.Unmarshal(validUTF8(md, raw), valid) == nil {
			vs = append(vs, badrequest.Beside(vs, service.Violations(valid))...)
		}
		st, _ := rpcerror.Status(&badrequest.Error{Violations: vs, More: w.more}, rpcerror.Request{})
		return st
	}
	detail, _ := protoDetail(err.Error())
	st, _ := rpcerror.Status(&rpcerror.RequestError{Code: codes.InvalidArgument, Reason: rpcerror.ReasonMalformed,
		Msg: fmt.Sprintf("malformed request: the message could not be decoded as %s (%s); "+
			"send it with a client generated from backupd's proto (proto/backup/v1)",
			md.FullName(), detail)}, rpcerror.Request{})
	return st
}

func (c *deferringCodec) keep(m proto.Message, st *status.Status) {
	if _, replaced := c.failed.Swap(m, deferred{st: st, at: c.now()}); !replaced {
		c.kept.Add(1)
	}
	c.sweep()
}

// take returns, and forgets, the status kept for req.
func (c *deferringCodec) take(req any) error {
	if c == nil || c.kept.Load() == 0 {
		return nil
	}
	d, ok := c.failed.LoadAndDelete(req)
	if ok {
		c.kept.Add(-1)
	}
	c.sweep()
	if !ok {
		return nil
	}
	return d.(deferred).st.Err()
}

// sweep drops the statuses no interceptor took, at most once a second.
func (c *deferringCodec) sweep() {
	now := c.now()
	last := c.lastSweep.Load()
	if now.UnixNano()-last < int64(time.Second) || !c.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	c.failed.Range(func(k, v any) bool {
		if now.Sub(v.(deferred).at) > staleAfter {
			if _, ok := c.failed.LoadAndDelete(k); ok {
				c.kept.Add(-1)
			}
		}
		return true
	})
}

// utf8Walk finds the string fields of a wire-format message that are not
// valid UTF-8, nested messages' too, which protobuf refuses without
// naming them: the first limit as field violations, the rest counted, so
// that a request of a great many (a 1 MiB request may hold 200 000), read
// before its caller is authenticated, costs no more than one of a few.
type utf8Walk struct {
	vs    []badrequest.Violation
	more  int
	limit int
	at    []fieldAt // the fields the walk is in
	// merged is set when a message field that is not a list comes more
	// than once, which protobuf merges into one: the walk then names
	// the lists inside it by each occurrence's own count.
	merged bool
}

// walk walks the message b of md, found at w.at (empty for the request's
// own fields), which is spelled out only when a violation names it.
func (w *utf8Walk) walk(md protoreflect.MessageDescriptor, b []byte) {
	var seen [walkedFields]int // elements of a list so far, by field number
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || int(num) >= len(seen) || typ != protowire.BytesType ||
			(fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.MessageKind) {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return
		}
		b = b[n:]
		w.at = append(w.at, fieldAt{fd: fd, i: seen[num]})
		w.merged = w.merged || fd.Kind() == protoreflect.MessageKind && !fd.IsList() && seen[num] > 0
		seen[num]++
		switch {
		case fd.Kind() == protoreflect.MessageKind:
			w.walk(fd.Message(), v)
		case utf8.Valid(v):
		case len(w.vs) < w.limit:
			name := w.path()
			w.vs = append(w.vs, badrequest.Violation{Field: name, Description: name + " must be valid UTF-8"})
		default:
			w.more++
		}
		w.at = w.at[:len(w.at)-1]
	}
}

// validUTF8 is the wire-format message b of md with every string field
// that is not UTF-8, nested ones too, made valid (its bad bytes replaced
// by U+FFFD), so that the rest of the request can be decoded and judged.
// A field it cannot read is kept as it is.
func validUTF8(md protoreflect.MessageDescriptor, b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return append(out, b...)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return append(out, b...)
		}
		field := b[:n+m]
		b = b[n+m:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType || (fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.MessageKind) {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		switch {
		case fd.Kind() == protoreflect.MessageKind:
			v = validUTF8(fd.Message(), v)
		case utf8.Valid(v):
			out = append(out, field...)
			continue
		default:
			v = []byte(strings.ToValidUTF8(string(v), "\uFFFD"))
		}
		out = protowire.AppendTag(out, num, typ)
		out = protowire.AppendBytes(out, v)
	}
	return out
}

// walkedFields bounds the field numbers the walk looks into: backupd's
// messages have none higher (TestWalkedFieldsCoverTheProto), and an array
// counts a list's elements without an allocation.
const walkedFields = 16

// fieldAt is a field of a request, the i-th of its list.
type fieldAt struct {
	fd protoreflect.FieldDescriptor
	i  int
}

// path is the path of the field the walk is at
// (global_secondary_index_override.indexes[1].index_name).
func (w *utf8Walk) path() string {
	var b strings.Builder
	for j, f := range w.at {
		if j > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(f.fd.Name()))
		if f.fd.IsList() {
			fmt.Fprintf(&b, "[%d]", f.i)
		}
	}
	return b.String()
}

// maxRevalidatedBytes bounds the undecodable request whose other fields
// are judged too: as large as a REST body may be (rest.MaxBodyBytes).
const maxRevalidatedBytes = 64 << 10

// protoDetail is what a protobuf error message says after its "proto:"
// prefix, which the protobuf module follows with a space or, at random, a
// no-break space (so that no one depends on its text).
func protoDetail(msg string) (string, bool) {
	detail, ok := strings.CutPrefix(msg, "proto:")
	return strings.TrimLeft(detail, " \u00a0"), ok
}
