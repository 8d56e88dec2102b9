package bench

import (
	"context"
	"testing"

	"github.com/backupd/backupd/awsbase"
)

// BenchmarkChainingCost takes apart why the floors chained (bare-proxy) cost
// more than the floors measured one after the other: the SDK call on a
// fresh goroutine per call, as grpc-go runs each handler by default (and
// backupd's server when all its stream workers are busy), with and without
// its stack grown first (awsbase.GrowStack), versus on the benchmark's own;
// the rest is the threads that park while one hop waits
// for the other and must be woken again.
func BenchmarkChainingCost(b *testing.B) {
	ctx := context.Background()
	s, err := Start(ctx, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	direct := s.Call(DirectSDK)
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if err := direct(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, v := range []struct {
		name string
		grow func()
	}{
		{"direct-fresh-goroutine", func() {}},
		{"direct-fresh-goroutine-grown", awsbase.GrowStack}, // as backupd's interceptor does
	} {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				done := make(chan error)
				go func() { v.grow(); done <- direct(ctx) }()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("bare-grpc", func(b *testing.B) {
		f := s.Call(BareGRPC)
		for b.Loop() {
			if err := f(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare-proxy", func(b *testing.B) {
		f := s.Call(BareProxy)
		for b.Loop() {
			if err := f(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
