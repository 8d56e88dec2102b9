//go:build unix

package certreload

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestStalledReadLeavesOtherHandshakesServed: while one handshake reads
// files that stall (a hung network or FUSE mount; a FIFO here), the
// others are served the value in service instead of waiting for it.
func TestStalledReadLeavesOtherHandshakesServed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "stalls")
	if err := syscall.Mkfifo(file, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &reloader[string]{files: []string{file}, interval: time.Hour, log: discard(), value: "old",
		parse: func(contents [][]byte) (string, error) { return string(contents[0]), nil }}
	reloaded := make(chan string)
	go func() { reloaded <- r.get() }() // the check is due: it reads, and stalls
	served := make(chan string)
	go func() {
		for !isReloading(r) {
			time.Sleep(time.Millisecond)
		}
		served <- r.get()
	}()
	select {
	case v := <-served:
		if v != "old" {
			t.Errorf("served %q during the stalled read; want the value in service, %q", v, "old")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a handshake waited for another one's stalled read of the files")
	}

	// Nobody had the FIFO open for writing, so the read stalled in its
	// open. Opening it for writing waits for that reader in turn: the
	// write cannot come before the reader is there, and be lost with the
	// pipe when it is closed (the test's open for reading and writing
	// did, once, and the read then waited for ever).
	stall, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stall.WriteString("new"); err != nil {
		t.Fatal(err)
	}
	stall.Close()
	if v := <-reloaded; v != "new" {
		t.Errorf("the reading handshake was served %q; want the files' new value", v)
	}
	if v := r.get(); v != "new" {
		t.Errorf("served %q after the reload; want %q", v, "new")
	}
}

func isReloading[T any](r *reloader[T]) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloading
}
