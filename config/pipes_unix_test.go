//go:build unix

package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backupd/backupd/testenv"
)

// TestRedisPasswordFileReadOnce: Parse reads password_file once, so a
// password handed over through a pipe (a FIFO a secrets agent writes
// once, or a shell's <(...)) is taken: a second read would wait for a
// writer that has gone, holding the start, or find the pipe empty.
func TestRedisPasswordFileReadOnce(t *testing.T) {
	fifo := pipeOnce(t, []byte("s3cret-pass\n"))
	readsOnce(t, fifo, func() error {
		c, err := Parse(strings.NewReader(validYAML +
			"shared_state: {backend: redis, redis: {address: 'redis:6379', password_file: " + fifo + "}}\n"))
		if err != nil {
			return fmt.Errorf("Parse: %w", err)
		}
		if got := c.SharedState.Redis.Password; got != "s3cret-pass" {
			return fmt.Errorf("password %q; want the pipe's", got)
		}
		return nil
	})
}

// TestRedisCAFileReadOnce: tls_ca_file is read once too, by Parse, and
// the Redis client is built from what it read (RootCAs).
func TestRedisCAFileReadOnce(t *testing.T) {
	pem, err := os.ReadFile(testenv.SelfSignedTLS(t).CertFile)
	if err != nil {
		t.Fatal(err)
	}
	fifo := pipeOnce(t, pem)
	readsOnce(t, fifo, func() error {
		c, err := Parse(strings.NewReader(validYAML +
			"shared_state: {backend: redis, redis: {address: 'redis:6379', tls: true, tls_ca_file: " + fifo + "}}\n"))
		if err != nil {
			return fmt.Errorf("Parse: %w", err)
		}
		roots, err := c.SharedState.Redis.RootCAs()
		if err == nil && roots == nil {
			err = errors.New("no CAs")
		}
		return err
	})
}

// pipeOnce makes a FIFO that a writer fills with content once, when it is
// first opened for reading, and then leaves.
func pipeOnce(t *testing.T, content []byte) string {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for the reader
		if err != nil {
			return
		}
		_, _ = w.Write(content)
		_ = w.Close()
	}()
	return fifo
}

// readsOnce fails t when read, which reads fifo (pipeOnce), fails, or is
// still waiting on it 10 s after its writer wrote and went: a second
// read of the pipe.
func readsOnce(t *testing.T, fifo string, read func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- read() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		// Let the second reader go: a writer that opens and closes
		// gives it end of file.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = w.Close()
		}
		<-done
		t.Fatal("still waiting on the pipe 10s after its writer wrote and went: the file is read more than once")
	}
}
