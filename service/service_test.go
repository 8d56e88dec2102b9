package service

import (
	"testing"
	"time"
)

// TestConsistencyWindow: a backup holds every write made a minute before
// its request was submitted, and none made a minute after, whatever the
// submit time (a fraction of a second included, which the window keeps).
func TestConsistencyWindow(t *testing.T) {
	tests := []struct {
		name                     string
		submitted                time.Time
		includesBefore, excludes time.Time
	}{
		{"on the second", time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC),
			time.Date(2026, 11, 28, 11, 59, 0, 0, time.UTC), time.Date(2026, 11, 28, 12, 1, 0, 0, time.UTC)},
		{"within a second", time.Date(2026, 11, 28, 12, 0, 30, 123456789, time.UTC),
			time.Date(2026, 11, 28, 11, 59, 30, 123456789, time.UTC), time.Date(2026, 11, 28, 12, 1, 30, 123456789, time.UTC)},
		{"across midnight and a year", time.Date(2026, 12, 31, 23, 59, 30, 0, time.UTC),
			time.Date(2026, 12, 31, 23, 58, 30, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 30, 0, time.UTC)},
		{"in another zone", time.Date(2026, 11, 28, 13, 0, 0, 0, time.FixedZone("CET", 3600)),
			time.Date(2026, 11, 28, 11, 59, 0, 0, time.UTC), time.Date(2026, 11, 28, 12, 1, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := consistencyWindow(tt.submitted)
			if got := w.GetIncludesWritesBefore().AsTime(); !got.Equal(tt.includesBefore) {
				t.Errorf("includes_writes_before = %s; want %s, a minute before the submit time %s", got, tt.includesBefore, tt.submitted)
			}
			if got := w.GetExcludesWritesAfter().AsTime(); !got.Equal(tt.excludes) {
				t.Errorf("excludes_writes_after = %s; want %s, a minute after the submit time %s", got, tt.excludes, tt.submitted)
			}
		})
	}
}
