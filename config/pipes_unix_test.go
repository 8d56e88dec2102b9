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
	fifo := filepath.Join(t.TempDir(), "pw")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for the reader
		if err != nil {
			return
		}
		_, _ = w.WriteString("s3cret-pass\n")
		_ = w.Close()
	}()
	type result struct {
		c   *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Parse(strings.NewReader(validYAML +
			"shared_state: {backend: redis, redis: {address: 'redis:6379', password_file: " + fifo + "}}\n"))
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Parse: %v", r.err)
		}
		if got := r.c.SharedState.Redis.Password; got != "s3cret-pass" {
			t.Errorf("password %q; want the pipe's", got)
		}
	case <-time.After(10 * time.Second):
		// Let the second reader go: a writer that opens and closes
		// gives it end of file.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = w.Close()
		}
		<-done
		t.Fatal("Parse still waiting on the pipe 10s after its writer wrote the password and went: it reads password_file more than once")
	}
}

// TestRedisCAFileReadOnce: tls_ca_file is read once too, by Parse, and
// the Redis client is built from what it read (RootCAs): a second read
// of a pipe would wait for a writer that has gone.
func TestRedisCAFileReadOnce(t *testing.T) {
	pem, err := os.ReadFile(testenv.SelfSignedTLS(t).CertFile)
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "ca")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for the reader
		if err != nil {
			return
		}
		_, _ = w.Write(pem)
		_ = w.Close()
	}()
	done := make(chan error, 1)
	go func() {
		c, err := Parse(strings.NewReader(validYAML +
			"shared_state: {backend: redis, redis: {address: 'redis:6379', tls: true, tls_ca_file: " + fifo + "}}\n"))
		if err != nil {
			done <- fmt.Errorf("Parse: %w", err)
			return
		}
		roots, err := c.SharedState.Redis.RootCAs()
		if err == nil && roots == nil {
			err = errors.New("no CAs")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the pipe's CA: %v", err)
		}
	case <-time.After(10 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = w.Close()
		}
		<-done
		t.Fatal("still waiting on the pipe 10s after its writer wrote the CA and went: tls_ca_file is read more than once")
	}
}
