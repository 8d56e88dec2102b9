// Package integration holds backupd's end-to-end tests: they build the real
// backupd binary, start it with a config file, and drive it over gRPC (the
// generated Go client) and REST against moto's server, an AWS emulator
// started by scripts/test.sh, through the real AWS SDK over HTTP. A recording
// proxy between backupd and moto sees every AWS call: which operation, when,
// and which access key signed it.
//
// Run them with scripts/test.sh; under a plain `go test` they skip (and fail
// with CI=true) when moto is not there.
package integration
