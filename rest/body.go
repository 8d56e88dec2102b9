package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/redact"
)

// bodyViolations finds what protojson refused in a JSON body for md: the
// keys that name no field, and the values that do not fit their field,
// inside nested objects and lists too, each as a field violation. bound
// names the fields the route takes from its path, which the body may not
// set. It returns nil when the body is not a JSON object: protojson's own
// message then says what is wrong with the JSON.
func bodyViolations(md protoreflect.MessageDescriptor, data []byte, bound map[string]string) []badrequest.Violation {
	return objectViolations(md, data, "", bound)
}

func objectViolations(md protoreflect.MessageDescriptor, data []byte, prefix string, bound map[string]string) []badrequest.Violation {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return nil
	}
	var vs []badrequest.Violation
	seen := map[protoreflect.FieldNumber]string{}
	reported := map[protoreflect.FieldNumber]bool{} // given twice: one violation per field
	repeated := repeatedKeys(data)
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		fd := fieldByName(md, key)
		if repeated[key] {
			// encoding/json keeps the last; protojson refuses the body.
			name := prefix + keyName(key)
			if fd != nil {
				name, seen[fd.Number()] = prefix+string(fd.Name()), key
				reported[fd.Number()] = true
			}
			vs = append(vs, badrequest.Violation{Field: name, Description: fmt.Sprintf(
				"%s is given twice, as %s both times; give it once", name, shorten(key))})
			continue
		}
		if fd != nil {
			if other, ok := seen[fd.Number()]; ok {
				if !reported[fd.Number()] {
					name := prefix + string(fd.Name())
					vs = append(vs, badrequest.Violation{Field: name, Description: fmt.Sprintf(
						"%s is given twice, as %s and %s; give it once", name, shorten(other), shorten(key))})
					reported[fd.Number()] = true
				}
				continue
			}
			seen[fd.Number()] = key
		}
		if fd == nil {
			field := prefix + keyName(key)
			vs = append(vs, badrequest.Violation{Field: field, Description: fmt.Sprintf(
				"%s is not a field of %s; it takes %s", field, objectName(prefix), bodyFields(md, bound))})
			continue
		}
		name := prefix + string(fd.Name())
		if nested := nestedViolations(fd, obj[key], name); len(nested) > 0 {
			vs = append(vs, nested...)
			continue
		}
		switch {
		case !utf8.Valid(obj[key]):
			vs = append(vs, badrequest.Violation{Field: name, Description: name + " must be valid UTF-8"})
		case stringFor(fd, obj[key]) && !fits(md, key, obj[key]):
			// A string protojson refuses all the same: encoding/json
			// takes an escape of half a surrogate pair (\uD800) as
			// U+FFFD; protojson refuses it as invalid UTF-8, which the
			// raw bytes are not.
			vs = append(vs, badrequest.Violation{Field: name, Description: fmt.Sprintf(
				"%s must be valid UTF-8: a \\uD800-\\uDFFF escape must be one half of a surrogate pair; got %s", name, rawJSON(obj[key]))})
		case !fits(md, key, obj[key]):
			vs = append(vs, badrequest.Violation{Field: name, Description: fmt.Sprintf(
				"%s %s; got %s", name, accepts(fd, jsonText(obj[key]), true), rawJSON(obj[key]))})
		}
	}
	return vs
}

// repeatedKeys are the keys given more than once in the JSON object data
// (not in the objects inside it).
func repeatedKeys(data []byte) map[string]bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	count := map[string]int{}
	var repeated map[string]bool
	for dec.More() {
		t, err := dec.Token()
		key, ok := t.(string)
		if err != nil || !ok {
			return repeated
		}
		if count[key]++; count[key] == 2 {
			if repeated == nil {
				repeated = map[string]bool{}
			}
			repeated[key] = true
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return repeated
		}
	}
	return repeated
}

// alsoWrong lists what else is wrong with a body that protojson refused
// for the fields named: what the RPC's own validation refuses in the rest
// of the request (its other fields, nested ones too, and the path's), as
// it would if those fields were right, and a body field that contradicts
// the path. Violations of the fields named, and of those inside them, are
// left out: a field of the wrong type is not also missing.
func alsoWrong(msg proto.Message, data []byte, named []badrequest.Violation, params map[string]string, violations fieldRules) []badrequest.Violation {
	var obj map[string]json.RawMessage
	if len(named) == 0 || json.Unmarshal(data, &obj) != nil {
		return nil
	}
	bad := map[string]bool{}
	for _, v := range named {
		bad[v.Field] = true
	}
	rest, err := json.Marshal(pruned(msg.ProtoReflect().Descriptor(), obj, "", bad))
	if err != nil {
		return nil
	}
	partial := msg.ProtoReflect().New().Interface()
	if protojson.Unmarshal(rest, partial) != nil {
		return nil
	}
	conflicts := pathConflicts(partial, params)
	return append(conflicts, validationBeside(partial, params, append(named, conflicts...), violations)...)
}

// pruned is obj, a JSON object of a message md at path prefix, without
// the keys that name no field or a field bad holds, inside nested objects
// too; an element of a list that bad holds becomes an empty object.
func pruned(md protoreflect.MessageDescriptor, obj map[string]json.RawMessage, prefix string, bad map[string]bool) map[string]json.RawMessage {
	for key, raw := range obj {
		fd := fieldByName(md, key)
		if fd == nil || bad[prefix+string(fd.Name())] {
			delete(obj, key)
			continue
		}
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() || isWellKnown(fd.Message()) {
			continue
		}
		name := prefix + string(fd.Name())
		if !fd.IsList() {
			var inner map[string]json.RawMessage
			if json.Unmarshal(raw, &inner) == nil && inner != nil {
				obj[key], _ = json.Marshal(pruned(fd.Message(), inner, name+".", bad))
			}
			continue
		}
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			continue
		}
		for i, e := range elems {
			elem := fmt.Sprintf("%s[%d]", name, i)
			var inner map[string]json.RawMessage
			switch {
			case bad[elem]:
				elems[i] = json.RawMessage("{}")
			case json.Unmarshal(e, &inner) == nil && inner != nil:
				elems[i], _ = json.Marshal(pruned(fd.Message(), inner, elem+".", bad))
			}
		}
		obj[key], _ = json.Marshal(elems)
	}
	return obj
}

// validationBeside is what the RPC's own validation refuses in partial,
// a request read in part, once the path's parameters are in it, but for
// the fields already named.
func validationBeside(partial proto.Message, params map[string]string, named []badrequest.Violation, violations fieldRules) []badrequest.Violation {
	for name, value := range params {
		if runtime.PopulateFieldFromPath(partial, name, value) != nil {
			return nil
		}
	}
	return badrequest.Beside(named, violations(partial, named...))
}

// nestedViolations looks into a value that is an object, or a list of
// objects, of one of backupd's own messages.
func nestedViolations(fd protoreflect.FieldDescriptor, value json.RawMessage, name string) []badrequest.Violation {
	if fd.Kind() != protoreflect.MessageKind || fd.IsMap() || isWellKnown(fd.Message()) {
		return nil
	}
	if !fd.IsList() {
		return objectViolations(fd.Message(), value, name+".", nil)
	}
	var elems []json.RawMessage
	if json.Unmarshal(value, &elems) != nil {
		return nil
	}
	var vs []badrequest.Violation
	for i, e := range elems {
		elem := fmt.Sprintf("%s[%d]", name, i)
		if t := bytes.TrimSpace(e); len(t) == 0 || t[0] != '{' {
			vs = append(vs, badrequest.Violation{Field: elem, Description: fmt.Sprintf("%s must be an object; got %s", elem, rawJSON(e))})
			continue
		}
		vs = append(vs, objectViolations(fd.Message(), e, elem+".", nil)...)
	}
	return vs
}

// stringFor reports whether v is a JSON string given for a singular string
// field.
func stringFor(fd protoreflect.FieldDescriptor, v json.RawMessage) bool {
	var s string
	return fd.Kind() == protoreflect.StringKind && !fd.IsList() && json.Unmarshal(v, &s) == nil
}

// rawJSON shows a JSON value as the caller wrote it, shortened: a string
// keeps its quotes, so 123 and "123" read apart.
func rawJSON(v json.RawMessage) string {
	if len(v) > maxKeyEcho {
		return fmt.Sprintf("%s (%d bytes)", redact.Cut(string(v), maxKeyEcho), len(v))
	}
	return redact.Cut(string(v), maxKeyEcho)
}

// jsonText is v as text: a string's contents, or v itself.
func jsonText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// fits reports whether protojson takes value for the field key names.
func fits(md protoreflect.MessageDescriptor, key string, value json.RawMessage) bool {
	obj, err := json.Marshal(map[string]json.RawMessage{key: value})
	return err == nil && protojson.Unmarshal(obj, dynamicpb.NewMessage(md)) == nil
}

// fieldByName finds the field a JSON key names, by its JSON or proto name,
// as protojson does.
func fieldByName(md protoreflect.MessageDescriptor, key string) protoreflect.FieldDescriptor {
	if fd := md.Fields().ByJSONName(key); fd != nil {
		return fd
	}
	return md.Fields().ByTextName(key)
}

func isWellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile().Package() == "google.protobuf"
}

// objectName says which object a field was looked for in: the request, or
// the field named by prefix ("provisioned_throughput_override.").
func objectName(prefix string) string {
	if prefix == "" {
		return "the request body"
	}
	return strings.TrimSuffix(prefix, ".")
}

// bodyFields lists, by JSON name, the fields md takes in a body: all but
// those bound from the path.
func bodyFields(md protoreflect.MessageDescriptor, bound map[string]string) string {
	return unboundFields(md, func(n protoreflect.Name) bool { _, ok := bound[string(n)]; return ok },
		protoreflect.FieldDescriptor.JSONName)
}

// unboundFields lists md's fields that bound does not claim, each named by
// name, or "none".
func unboundFields(md protoreflect.MessageDescriptor, bound func(protoreflect.Name) bool,
	name func(protoreflect.FieldDescriptor) string) string {
	var names []string
	fields := md.Fields()
	for i := range fields.Len() {
		if !bound(fields.Get(i).Name()) {
			names = append(names, name(fields.Get(i)))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// shorten bounds how much of a caller's key an error repeats.
func shorten(key string) string {
	return redact.Cut(key, maxKeyEcho)
}

// pathConflicts lists the path fields that the decoded body msg sets to
// something else than the route's path params do: grpc-gateway then lets
// the path win without a word, so a body naming another account or table
// would be acted on where the path says. The decoder calls it before the
// gateway copies the path into msg.
func pathConflicts(msg proto.Message, params map[string]string) []badrequest.Violation {
	var vs []badrequest.Violation
	m := msg.ProtoReflect()
	for p := range params {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(p))
		if fd == nil || fd.Kind() != protoreflect.StringKind || !m.Has(fd) {
			continue
		}
		if got := m.Get(fd).String(); got != params[p] {
			vs = append(vs, badrequest.Violation{Field: p, Description: fmt.Sprintf(
				"%s is %s in the path but %s in the body; leave it out of the body", p, quoteWhole(params[p]), quoteWhole(got))})
		}
	}
	slices.SortFunc(vs, func(a, b badrequest.Violation) int { return strings.Compare(a.Field, b.Field) })
	return vs
}

// maxWholeEcho is the longest path value an error quotes whole: longer
// than any ARN, account id or table name can be.
const maxWholeEcho = 1024

// quoteWhole quotes s whole when it is no longer than maxWholeEcho, so
// that two ARNs that differ only in their last characters read apart;
// badrequest.Quote would cut them at 64 bytes.
func quoteWhole(s string) string {
	if len(s) > maxWholeEcho {
		return badrequest.Quote(s)
	}
	return fmt.Sprintf("%q", s)
}
