package service

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/backupd/backupd/testenv"
)

// A panic's value is logged as an error would be: a secret it carries is
// taken out, and a huge one is cut.
func TestRecoveredRedactsThePanic(t *testing.T) {
	tests := []struct {
		name    string
		p       any
		absent  string
		present string
	}{
		{"session token", errors.New("signing: X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr"), "IQoJb3JpZ2luX2VjEJr", "[redacted]"},
		{"huge value", strings.Repeat("x", 10000), strings.Repeat("x", 5000), `"panic":"xxx`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testenv.Buffer{}
			err := Recovered(context.Background(), slog.New(slog.NewJSONHandler(logs, nil)), tt.p, slog.String("operation", "CreateBackup"))
			if !errors.Is(err, ErrPanic) {
				t.Errorf("err = %v, want ErrPanic", err)
			}
			if got := logs.String(); strings.Contains(got, tt.absent) || !strings.Contains(got, tt.present) {
				t.Errorf("log %.300s...; want no %.20q and a %q", got, tt.absent, tt.present)
			}
		})
	}
}
