package sandbox_test

import (
	"strings"
	"testing"

	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/sandbox"
)

// `backupd --sandbox` starts with DemoConfig unvalidated: it must pass the
// checks a --config file does.
func TestDemoConfigIsValid(t *testing.T) {
	cfg := sandbox.DemoConfig(sandbox.DemoAccounts())
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DemoConfig is invalid: %v", err)
	}
	if err := sandbox.LoopbackOnly(cfg.Listen); err != nil {
		t.Errorf("DemoConfig listens off loopback: %v", err)
	}
	if !cfg.AnonymousCallers {
		t.Error("DemoConfig should let requests without a token through")
	}
	want := map[string]string{"sandbox-admin": "demo-admin-token", "sandbox-reader": "demo-reader-token"}
	for _, c := range cfg.Callers {
		if c.TokenSHA256 != callers.HashToken(want[c.Name]) {
			t.Errorf("caller %s: token hash %s is not that of %q", c.Name, c.TokenSHA256, want[c.Name])
		}
		delete(want, c.Name)
	}
	if len(want) != 0 {
		t.Errorf("DemoConfig lacks the callers %v", want)
	}
}

func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		grpc, http string
		ok         bool
	}{
		{"127.0.0.1:9090", "127.0.0.1:8080", true},
		{"localhost:0", "[::1]:8080", true},
		{"127.0.0.2:9090", "127.0.0.1:8080", true},
		{":9090", "127.0.0.1:8080", false},
		{"127.0.0.1:9090", "0.0.0.0:8080", false},
		{"127.0.0.1:9090", "10.0.0.1:8080", false},
		{"127.0.0.1", "127.0.0.1:8080", false},
	}
	for _, tt := range tests {
		err := sandbox.LoopbackOnly(config.Listen{GRPC: tt.grpc, HTTP: tt.http})
		if (err == nil) != tt.ok {
			t.Errorf("LoopbackOnly(%q, %q) = %v; want ok %v", tt.grpc, tt.http, err, tt.ok)
		}
	}
	// Both are named, not only the first.
	err := sandbox.LoopbackOnly(config.Listen{GRPC: "0.0.0.0:9090", HTTP: "0.0.0.0:8080"})
	if err == nil || !strings.Contains(err.Error(), `"0.0.0.0:9090"`) || !strings.Contains(err.Error(), `"0.0.0.0:8080"`) {
		t.Errorf("LoopbackOnly of two addresses off loopback: %v; want both named", err)
	}
}
