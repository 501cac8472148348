package node

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The entrypoint's output is the user's to make as large as they like:
// only its end is read, without the NULs the wire cannot carry, and nothing
// but a regular file (no symlink out, no FIFO to block on).
func TestReadLogReadsOnlyTheEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.log")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", 3*logTail)+"the end\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := readLog(big)
	if len(got) != logTail || !strings.HasSuffix(got, "the end\n") {
		t.Errorf("read %d bytes ending %q, want the last %d", len(got), got[max(len(got)-8, 0):], logTail)
	}
	os.WriteFile(filepath.Join(dir, "small.log"), []byte("sh\x00ort\n"), 0o600)
	if got := readLog(filepath.Join(dir, "small.log")); got != "short\n" {
		t.Errorf("small log: %q", got)
	}
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("not a log"), 0o600)
	os.Symlink(secret, filepath.Join(dir, "link.log"))
	if got := readLog(filepath.Join(dir, "link.log")); got != "" {
		t.Errorf("followed a symlink: %q", got)
	}
	fifo := filepath.Join(dir, "fifo.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() { done <- readLog(fifo) }()
	select {
	case got := <-done:
		if got != "" {
			t.Errorf("read a FIFO: %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked on a FIFO")
	}
}
