package connlimit

import (
	"strings"
	"testing"
)

func TestFileLimitWarning(t *testing.T) {
	for _, tt := range []struct {
		name  string
		total int
		limit uint64
		warn  bool
	}{
		{"the default under systemd's limit", 10000, 524288, false},
		{"exactly the reserve left", 10000, 11024, false},
		{"less than the reserve left", 10000, 11023, true},
		{"over the limit", 10000, 4096, true},
		{"a small total under a small limit", 1000, 4096, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := fileLimitWarning(tt.total, tt.limit)
			if (got != "") != tt.warn {
				t.Fatalf("fileLimitWarning(%d, %d) = %q; want a warning: %v", tt.total, tt.limit, got, tt.warn)
			}
			if tt.warn && (!strings.Contains(got, "listen.max_connections") || !strings.Contains(got, "ulimit -n")) {
				t.Errorf("warning %q names neither the setting nor the limit", got)
			}
		})
	}
}
