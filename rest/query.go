package rest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/backupd/backupd/badrequest"
)

// queryParser is grpc-gateway's query parser with two changes that make a
// mistake in a URL visible. A parameter that names no field is refused, as
// an unknown JSON field is: the default ignores it, so a typo such as
// ?tablename=Orders would list the backups of every table. A value that does
// not fit its field gets a field violation that names the field and what it
// accepts, instead of a strconv message.
type queryParser struct {
	runtime.DefaultQueryParser
}

// Parse fills msg from the query, or refuses it. It runs before the
// caller is known, and tells only whether the query
// is refused, by its first violation: the generated gateway code keeps
// only the error's text, and gateway.handleError finds every violation
// again (requestViolations) once the caller may be told them. Naming
// each of the thousands of keys a 64 KiB query may hold cost an unknown
// caller's request 60 ms of CPU.
func (p *queryParser) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	values = withColonOffsets(msg, values)
	if vs := queryViolations(msg, values, filter, false, 1); len(vs) > 0 {
		return &badrequest.Error{Violations: vs}
	}
	err := p.DefaultQueryParser.Parse(msg, values, filter)
	// Values are parsed one by one only when parsing them together failed.
	if err != nil {
		if vs := queryViolations(msg, values, filter, true, 1); len(vs) > 0 {
			return &badrequest.Error{Violations: vs}
		}
	}
	return err
}

// withColonOffsets returns values with each timestamp's UTC offset in RFC
// 3339's extended form: 2026-01-02T15:04:05+0000 becomes ...+00:00. Python
// clients generated from the OpenAPI description send the basic form (ISO
// 8601 allows both, RFC 3339 only the extended one), and their time filters
// would otherwise fail out of the box. values is copied before a change.
func withColonOffsets(msg proto.Message, values url.Values) url.Values {
	md := msg.ProtoReflect().Descriptor()
	out, copied := values, false
	for k, vals := range values {
		if fd, _ := lookupField(md, k); !isTimestamp(fd) {
			continue
		}
		var fixed []string
		for i, v := range vals {
			n := len(v)
			if n <= 5 || !strings.Contains(v, "T") || (v[n-5] != '+' && v[n-5] != '-') || strings.Trim(v[n-4:], "0123456789") != "" {
				continue
			}
			if fixed == nil {
				fixed = slices.Clone(vals)
			}
			fixed[i] = v[:n-2] + ":" + v[n-2:]
		}
		if fixed == nil {
			continue
		}
		if !copied {
			out, copied = maps.Clone(values), true
		}
		out[k] = fixed
	}
	return out
}

// isTimestamp reports whether fd is a google.protobuf.Timestamp field.
func isTimestamp(fd protoreflect.FieldDescriptor) bool {
	return fd != nil && fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Timestamp"
}

// maxKeyEcho bounds how much of an unknown query parameter's name an error
// repeats.
const maxKeyEcho = 64

// queryViolations lists the query parameters that msg's route cannot take:
// those that name no field of msg, those given twice and, when probe is
// set, those whose value does not fit their field, and those bound from
// the path (filter), which grpc-gateway would ignore. A field named by
// both its spellings (?pageSize=1&page_size=2) is one field given twice,
// as it is when one spelling is repeated: the default parser refuses it
// with no more than a "duplicate field" line. most, when above 0, bounds
// the violations returned: the first, in the keys' order.
func queryViolations(msg proto.Message, values url.Values, filter *utilities.DoubleArray, probe bool, most int) []badrequest.Violation {
	q := queryCheck{msg: msg, md: msg.ProtoReflect().Descriptor(), values: values, filter: filter, probe: probe,
		spellings: make(map[string][]string)}
	keys := slices.Sorted(maps.Keys(values))
	for _, key := range keys {
		if fd, name := lookupField(q.md, key); fd != nil {
			q.spellings[name] = append(q.spellings[name], key)
		}
	}
	var vs []badrequest.Violation
	for _, key := range keys {
		if most > 0 && len(vs) == most {
			break
		}
		if v, bad := q.judge(key); bad {
			vs = append(vs, v)
		}
	}
	return vs
}

// queryCheck is what queryViolations judges each query key against.
type queryCheck struct {
	msg    proto.Message
	md     protoreflect.MessageDescriptor
	values url.Values
	filter *utilities.DoubleArray
	probe  bool
	// spellings are the keys that name each field, sorted.
	spellings map[string][]string
	// fields lists the parameters the route takes (queryFields), once
	// an unknown key needs it: the same for each.
	fields string
}

// judge says what is wrong with key, if anything. A field given under
// several spellings is judged once, with its first.
func (q *queryCheck) judge(key string) (badrequest.Violation, bool) {
	fd, name := lookupField(q.md, key)
	if fd == nil {
		field := keyName(key)
		if q.fields == "" {
			q.fields = queryFields(q.msg, q.filter)
		}
		return badrequest.Violation{
			Field:       field,
			Description: fmt.Sprintf("%s is not a query parameter of this route; it takes %s", field, q.fields),
		}, true
	}
	if parent, _, dotted := strings.Cut(name, "."); dotted {
		// grpc-gateway would set the timestamp from both it and its
		// parts, in map order: the filter would change from one
		// request to the next.
		if pfd := q.md.Fields().ByName(protoreflect.Name(parent)); pfd != nil && isTimestamp(pfd) {
			return badrequest.Violation{Field: name, Description: fmt.Sprintf(
				"%s is a part of %s, which takes one RFC 3339 timestamp: give it whole, as %s", name, parent, pfd.JSONName())}, true
		}
	}
	same := q.spellings[name]
	switch {
	case same[0] != key:
		return badrequest.Violation{}, false // judged with its first spelling
	case q.filter.HasCommonPrefix(strings.Split(name, ".")):
		return badrequest.Violation{
			Field:       name,
			Description: fmt.Sprintf("%s comes from the path; leave it out of the query", name),
		}, true
	}
	n := 0
	for _, k := range same {
		n += len(q.values[k])
	}
	if n > 1 && fd.Cardinality() != protoreflect.Repeated {
		desc := fmt.Sprintf("%s must be given once; got %d values", name, n)
		if len(same) > 1 {
			desc += ", as " + strings.Join(same, " and ")
		}
		return badrequest.Violation{Field: name, Description: desc}, true
	}
	if !q.probe {
		return badrequest.Violation{}, false // the query parsed as a whole
	}
	given, got := url.Values{}, []string(nil)
	for _, k := range same {
		given[k] = q.values[k]
		got = append(got, q.values[k]...)
	}
	var parser runtime.DefaultQueryParser
	if parser.Parse(q.msg.ProtoReflect().New().Interface(), given, q.filter) == nil {
		return badrequest.Violation{}, false
	}
	value := strings.Join(got, ",")
	hint := ""
	if fd.Kind() == protoreflect.MessageKind && plusAsSpace.MatchString(value) {
		hint = " (a + in a URL query reads as a space: send it as %2B)"
	}
	return badrequest.Violation{
		Field:       name,
		Description: fmt.Sprintf("%s %s; got %s%s", name, accepts(fd, value, false), badrequest.Quote(value), hint),
	}, true
}

// plusAsSpace matches what a time's UTC offset (+01:00) becomes in a
// query that sent its + unescaped: a space before a digit.
var plusAsSpace = regexp.MustCompile(` [0-9]`)

// keyName names a query parameter or a body key in an error: shortened,
// and quoted when it is empty, so a field violation never names "", or
// when it could read as a field's path (a.b, a[0]), so that an unknown
// key is never named as a field that is there. A key that is not UTF-8
// (a query's %80) is quoted with its bytes escaped ("\x80"): shortened
// bare, it would read U+FFFD, which does not say what was sent.
func keyName(key string) string {
	switch {
	case !utf8.ValidString(key):
		return shorten(strconv.Quote(key))
	case key == "" || strings.ContainsAny(key, `.[]"`):
		return strconv.Quote(shorten(key))
	}
	return shorten(key)
}

// requestViolations is queryViolations for the REST request r whose RPC
// grpc-gateway recorded in ctx and whose path parameters call holds, or nil
// when they are unknown.
func requestViolations(ctx context.Context, r *http.Request, call *restCall, violations fieldRules) []badrequest.Violation {
	method, ok := runtime.RPCMethod(ctx)
	if !ok || r.URL.RawQuery == "" {
		return nil
	}
	msg := requestOf(method)
	if msg == nil {
		return nil
	}
	var bound [][]string
	for p := range call.params {
		bound = append(bound, strings.Split(p, "."))
	}
	values, filter := withColonOffsets(msg, r.URL.Query()), utilities.NewDoubleArray(bound)
	vs := queryViolations(msg, values, filter, true, 0)
	return append(vs, alsoWrongInQuery(msg, values, filter, vs, call.params, violations)...)
}

// requestOf is a new, empty request of the gRPC method (its full name),
// or nil for a method backupd's protos do not have.
func requestOf(method string) proto.Message {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", ".")))
	if err != nil {
		return nil
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return nil
	}
	return mt.New().Interface()
}

// alsoWrongInQuery is alsoWrong for a query: what the RPC's own
// validation refuses in the parameters that could be read, and in the
// path's.
func alsoWrongInQuery(msg proto.Message, values url.Values, filter *utilities.DoubleArray, named []badrequest.Violation, params map[string]string, violations fieldRules) []badrequest.Violation {
	if len(named) == 0 {
		return nil
	}
	rest := url.Values{}
	for key, vals := range values {
		if fd, name := lookupField(msg.ProtoReflect().Descriptor(), key); fd != nil &&
			!slices.ContainsFunc(named, func(n badrequest.Violation) bool { return badrequest.Within(name, n.Field) }) {
			rest[key] = vals
		}
	}
	partial := msg.ProtoReflect().New().Interface()
	if new(runtime.DefaultQueryParser).Parse(partial, rest, filter) != nil {
		return nil
	}
	return validationBeside(partial, params, named, violations)
}

// lookupField finds the field a query key names, by proto or JSON name,
// through singular message fields for dotted keys. name is its dotted proto
// path.
func lookupField(md protoreflect.MessageDescriptor, key string) (protoreflect.FieldDescriptor, string) {
	var (
		fd   protoreflect.FieldDescriptor
		path []string
	)
	for part := range strings.SplitSeq(key, ".") {
		if md == nil {
			return nil, ""
		}
		fd = md.Fields().ByTextName(part)
		if fd == nil {
			fd = md.Fields().ByJSONName(part)
		}
		if fd == nil {
			return nil, ""
		}
		path = append(path, string(fd.Name()))
		md = nil
		if fd.Cardinality() != protoreflect.Repeated {
			md = fd.Message()
		}
	}
	return fd, strings.Join(path, ".")
}

// accepts describes the values a field takes in a query string or a JSON
// body (inJSON), given the value it refused as text, got.
func accepts(fd protoreflect.FieldDescriptor, got string, inJSON bool) string {
	switch {
	case fd.IsMap():
		return "must be an object"
	case fd.IsList():
		return "must be a list"
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return "must be a string"
	case protoreflect.EnumKind:
		var names []string
		vals := fd.Enum().Values()
		for i := range vals.Len() {
			if vals.Get(i).Number() != 0 {
				names = append(names, string(vals.Get(i).Name()))
			}
		}
		return "must be one of " + strings.Join(names, ", ")
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return integerRule(fd.Kind(), got, inJSON)
	case protoreflect.BoolKind:
		return "must be true or false"
	case protoreflect.MessageKind:
		if isTimestamp(fd) {
			return "must be an RFC 3339 timestamp such as 2026-01-02T15:04:05Z"
		}
		return "must be an object"
	}
	return "has a value of the wrong type"
}

// integerRule says why got, a value as text (a JSON string's contents,
// for one), is no value of an integer field of kind k (int32 or int64, the
// kinds backupd's API has): a whole number out of the range of the field's
// type (in digits, or in a JSON body also as a number such as 1e20, which
// protojson takes), or else not an integer. That range is not the rule a
// caller must follow (page_size takes 1 to 100, which the service says
// once the value parses), so it is not spelled out as one.
func integerRule(k protoreflect.Kind, got string, inJSON bool) string {
	bits, typ := 64, "a 64-bit integer"
	if k == protoreflect.Int32Kind || k == protoreflect.Sint32Kind || k == protoreflect.Sfixed32Kind {
		bits, typ = 32, "a 32-bit integer"
	}
	outOfRange := false
	if digits := strings.TrimLeft(got, "+-"); len(got)-len(digits) <= 1 && digits != "" && strings.Trim(digits, "0123456789") == "" {
		// ParseInt reports a range error before it looks past the digits
		// that overflow, so the form is checked first.
		_, err := strconv.ParseInt(got, 10, bits)
		outOfRange = errors.Is(err, strconv.ErrRange)
	} else if f, err := strconv.ParseFloat(got, 64); inJSON && err == nil && !math.IsInf(f, 0) && f == math.Trunc(f) {
		limit := math.Ldexp(1, bits-1) // -limit is the least value, limit-1 the greatest
		outOfRange = f < -limit || f >= limit
	}
	if outOfRange {
		return "is out of range for " + typ
	}
	return "must be an integer"
}

// queryFields lists the parameters a route takes: msg's fields that are not
// bound from its path, named as the OpenAPI description names them
// (lowerCamelCase, like the body's fields; the proto names work too).
func queryFields(msg proto.Message, filter *utilities.DoubleArray) string {
	return unboundFields(msg.ProtoReflect().Descriptor(),
		func(n protoreflect.Name) bool { return filter.HasCommonPrefix([]string{string(n)}) },
		func(fd protoreflect.FieldDescriptor) string { return fd.JSONName() })
}
