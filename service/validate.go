package service

import (
	"fmt"
	"strings"

	"github.com/backupd/backupd/awsname"
	"github.com/backupd/backupd/badrequest"
)

// violations collects field problems; its zero value is ready to use.
type violations []badrequest.Violation

// add records what is wrong with field. A field found wrong twice (a
// table ARN of another account and region) keeps one violation, which
// says both: google.rpc.BadRequest has one per bad field. A field is
// looked for among the first mergeWithin violations only, so that a
// request of thousands of bad index overrides costs time in proportion
// to its size (the answer shows rpcerror.MaxViolations of them).
func (vs *violations) add(field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for i := range min(len(*vs), mergeWithin) {
		if (*vs)[i].Field == field {
			(*vs)[i].Description += "; and it " + msg
			return
		}
	}
	*vs = append(*vs, badrequest.Violation{Field: field, Description: field + " " + msg})
}

// mergeWithin bounds the violations add looks through, above the
// rpcerror.MaxViolations an answer shows.
const mergeWithin = 64

func (vs violations) err() error {
	if len(vs) == 0 {
		return nil
	}
	return &badrequest.Error{Violations: vs}
}

const (
	nameRule     = "must be 3-255 characters of a-z A-Z 0-9 _ . -"
	maxRequestID = 128
)

func checkAccountID(vs *violations, field, id string) {
	switch {
	case id == "":
		vs.add(field, "is required: the 12-digit AWS account id")
	case !awsname.ValidAccountID(id):
		vs.add(field, "must be exactly 12 digits; got %s", badrequest.Quote(id))
	}
}

// checkRegion accepts an empty region (the account's default applies).
func checkRegion(vs *violations, field, region string) {
	if region != "" && !awsname.ValidRegion(region) {
		vs.add(field, "must be an AWS region such as us-east-1; got %s", badrequest.Quote(region))
	}
}

// checkName enforces DynamoDB's rule for table, index and backup names.
func checkName(vs *violations, field, name string) {
	switch {
	case name == "":
		vs.add(field, "is required; it %s", nameRule)
	case len(name) < 3 || len(name) > 255:
		vs.add(field, "%s; got %d", nameRule, len(name)) // as DESIGN.md words it
	case !nameChars(name):
		vs.add(field, "%s; got %s", nameRule, badrequest.Quote(name))
	}
}

// nameChars reports whether s holds only a-z A-Z 0-9 _ . -: a loop, as a
// regular expression took about 1 µs a name on every request.
func nameChars(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// visibleASCII reports whether s is printable ASCII without spaces.
func visibleASCII(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) < 0
}

func checkRequestID(vs *violations, field, id string) {
	if len(id) > maxRequestID {
		vs.add(field, "must be at most %d printable ASCII characters; got %d", maxRequestID, len(id))
		return
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			vs.add(field, "must be printable ASCII; byte %d is 0x%02x", i, id[i])
			return
		}
	}
}
