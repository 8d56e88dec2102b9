package server

import (
	"strings"
	"unicode/utf8"

	"github.com/backupd/backupd/config"
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
// when it is one (config.ValidAccountID); otherwise it is left out, since
// a request that names no valid account may name anything.
func accountOrNone(a string) string {
	if !config.ValidAccountID(a) {
		return ""
	}
	return a
}

// regionOrNone is r, a region for a log line, when it is one
// (config.ValidRegion, which bounds its length); otherwise it is left out.
func regionOrNone(r string) string {
	if !config.ValidRegion(r) {
		return ""
	}
	return r
}
