package sandbox

import (
	"errors"
	"fmt"
	"net"

	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
)

// demoCallers are the sandbox's demo callers, by token. Requests
// without a token pass too (config.AnonymousCallers).
var demoCallers = []struct {
	token string
	c     config.Caller
}{
	{"demo-admin-token", config.Caller{Name: "sandbox-admin", Accounts: []string{config.Any}, Operations: []string{config.Any}}},
	{"demo-reader-token", config.Caller{Name: "sandbox-reader", Accounts: []string{"111111111111"},
		Operations: []string{"GetBackup", "ListBackups"}}},
}

// DemoConfig returns the backupd configuration `backupd --sandbox` runs
// with, for the accounts demo (DemoAccounts): listeners on loopback, a
// text log, each account's role, and the demo callers sandbox-admin
// (token demo-admin-token) and sandbox-reader (demo-reader-token), with
// requests that send no token let through. It is defaulted but not
// validated. It lives here, beside DemoAccounts, so that cmd/backupd
// only wires.
func DemoConfig(demo []Account) *config.Config {
	cfg := &config.Config{
		Listen:           config.Listen{GRPC: "127.0.0.1:9090", HTTP: "127.0.0.1:8080"},
		Log:              config.Log{Format: "text"},
		AnonymousCallers: true,
	}
	for _, sc := range demoCallers {
		c := sc.c
		c.TokenSHA256 = callers.HashToken(sc.token)
		cfg.Callers = append(cfg.Callers, c)
	}
	for _, a := range demo {
		cfg.Accounts = append(cfg.Accounts, config.Account{
			ID:            a.ID,
			RoleARN:       "arn:aws:iam::" + a.ID + ":role/" + a.RoleName,
			ExternalID:    a.ExternalID,
			DefaultRegion: a.Region,
		})
	}
	cfg.ApplyDefaults()
	return cfg
}

// LoopbackOnly refuses listeners that are not on loopback: the sandbox
// lets requests without a token act in its accounts, so it must not be
// reachable from other hosts.
func LoopbackOnly(l config.Listen) error {
	var errs []error
	for _, addr := range []string{l.GRPC, l.HTTP} {
		if !isLoopback(addr) {
			errs = append(errs, fmt.Errorf("the sandbox listens on loopback only; %q is not a loopback address", addr))
		}
	}
	return errors.Join(errs...)
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
