package ratelimit

import (
	"testing"
	"time"
)

// TestTurnReadsOnlyWellFormedAnswers: an answer of takeTurn in another
// shape is an error, never a refusal with no delay (which would have the
// call ask again at once).
func TestTurnReadsOnlyWellFormedAnswers(t *testing.T) {
	tests := []struct {
		name string
		res  []any
		want *turnAnswer // nil: an error
	}{
		{"granted", []any{int64(1), int64(0), int64(0), "run-1", int64(1_700_000_000_000_000), int64(0), int64(3), int64(0)},
			&turnAnswer{granted: true, run: "run-1", now: time.UnixMicro(1_700_000_000_000_000), gen: 3}},
		{"refused with a delay", []any{int64(0), int64(22_000), int64(1), "run-1", int64(5), int64(0), int64(0), int64(0)},
			&turnAnswer{delay: 22 * time.Millisecond, lost: true, run: "run-1", now: time.UnixMicro(5)}},
		{"held", []any{int64(0), int64(1_022_000), int64(0), "run-1", int64(5), int64(1), int64(0), int64(0)},
			&turnAnswer{delay: 1022 * time.Millisecond, held: true, run: "run-1", now: time.UnixMicro(5)}},
		{"refused by the lead", []any{int64(0), int64(500_000), int64(0), "run-1", int64(5), int64(0), int64(0), int64(1)},
			&turnAnswer{delay: 500 * time.Millisecond, run: "run-1", now: time.UnixMicro(5), byLead: true}},
		{"without bylead", []any{int64(0), int64(22_000), int64(0), "run-1", int64(5), int64(0), int64(0)}, nil},
		{"too short", []any{int64(1), int64(0)}, nil},
		{"without held", []any{int64(1), int64(0), int64(0), "run-1", int64(5)}, nil},
		{"without gen", []any{int64(1), int64(0), int64(0), "run-1", int64(5), int64(0)}, nil},
		{"a delay as text", []any{int64(0), "22000", int64(0), "run-1", int64(5), int64(0), int64(0), int64(0)}, nil},
		{"no run id", []any{int64(0), int64(22_000), int64(0), nil, int64(5), int64(0), int64(0), int64(0)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := turn(tt.res)
			switch {
			case tt.want == nil && err == nil:
				t.Errorf("turn(%v) = %+v; want an error", tt.res, got)
			case tt.want != nil && (err != nil || got != *tt.want):
				t.Errorf("turn(%v) = %+v, %v; want %+v", tt.res, got, err, *tt.want)
			}
		})
	}
}
