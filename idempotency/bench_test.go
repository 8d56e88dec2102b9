package idempotency

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkMemoryKeep reports what the in-process store holds per kept
// result: heap bytes per entry (a 36-character request_id and a 200-byte
// response, the size of a CreateBackupResponse) and ns per Do.
func BenchmarkMemoryKeep(b *testing.B) {
	resp := make([]byte, 200)
	run := func(time.Time) ([]byte, error) { return append([]byte(nil), resp...), nil }
	m := NewMemory()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		k := Key{Account: "111111111111", RequestID: "6f1c2a7e-9d4b-4c1e-8a3f-" + strconv.FormatInt(100000000000+int64(i), 10)}
		if _, err := m.Do(context.Background(), k, Fingerprint{byte(i)}, run); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "heap-B/entry")
	runtime.KeepAlive(m)
}
