// Package badrequest is a request's field problems, as backupd reports
// them: one violation per bad field, named by its path, with the rule it
// broke (google.rpc.BadRequest on the wire). The service's validation and
// the servers' checks of what they decode both make them; package rpcerror
// maps them to INVALID_ARGUMENT.
package badrequest

import (
	"fmt"
	"strings"
)

// Violation is one field that broke one rule.
type Violation struct {
	Field       string
	Description string
}

// Error lists every bad field of a request. It is returned before any AWS
// call, so bad input changes nothing.
type Error struct {
	Violations []Violation
	// More counts the violations found beyond Violations and left out,
	// so that a request with a great many costs no more to answer.
	More int
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Violations), len(e.Violations)+1)
	for i, v := range e.Violations {
		parts[i] = v.Description
	}
	if e.More > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", e.More))
	}
	return strings.Join(parts, "; ")
}

// maxEcho bounds how much of a bad value Quote shows.
const maxEcho = 64

// Quote shows a bad value in a message, shortened so a huge input cannot
// flood a response or a log line.
func Quote(s string) string {
	if len(s) > maxEcho {
		return fmt.Sprintf("%q... (%d bytes)", s[:maxEcho], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// Beside is more without the violations of a field named, or of a field
// inside one: a request checked in two steps (what could not be read,
// then the rules of the rest) names each bad field once, and a field of
// the wrong type is not also missing, nor is one inside it. It costs time
// in proportion to its violations' paths, not to named times more: a
// REST body of thousands of list elements of the wrong type names as
// many fields, and its rules as many again (a 60 KiB one took 16 s of CPU).
func Beside(named, more []Violation) []Violation {
	fields := make(map[string]bool, len(named))
	for _, n := range named {
		fields[n.Field] = true
	}
	var out []Violation
	for _, v := range more {
		if !withinAny(v.Field, fields) {
			out = append(out, v)
		}
	}
	return out
}

// withinAny reports whether field is Within one of fields: whether it,
// or a part of it ending before a '.' or a '[', is one of them.
func withinAny(field string, fields map[string]bool) bool {
	if fields[field] {
		return true
	}
	for i := range len(field) {
		if (field[i] == '.' || field[i] == '[') && fields[field[:i]] {
			return true
		}
	}
	return false
}

// Within reports whether the field path field ("a.b[1].c") is outer or
// lies inside it.
func Within(field, outer string) bool {
	rest, ok := strings.CutPrefix(field, outer)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}
