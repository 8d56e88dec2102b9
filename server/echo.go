package server

import (
	"strings"
	"unicode/utf8"
)

// echo bounds and cleans caller text that an error or a log line repeats:
// at most max bytes, cut on a character boundary, with invalid UTF-8
// replaced. A status whose text or metadata is not UTF-8 cannot be encoded:
// grpc-go then drops its details, and the REST gateway answers 500.
func echo(s string, max int) string {
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// accountOrNone is a, an account id for a log line or an error's metadata,
// when it is one (12 digits); otherwise it is left out, since a request
// that names no valid account may name anything.
func accountOrNone(a string) string {
	if len(a) != 12 {
		return ""
	}
	for i := range len(a) {
		if a[i] < '0' || a[i] > '9' {
			return ""
		}
	}
	return a
}

// regionOrNone is r, a region for a log line, when it has a region's
// shape (such as us-east-1); otherwise it is left out.
func regionOrNone(r string) string {
	if len(r) == 0 || len(r) > 32 {
		return ""
	}
	for i := range len(r) {
		if c := r[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return ""
		}
	}
	return r
}
