package server

import (
	"github.com/backupd/backupd/config"
)

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
