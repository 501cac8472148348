package oci

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The output keeps only its end; past the limit the daemon stops reading
// and a writer gets EPIPE: the container's processes cannot make the
// daemon store or read without bound.
func TestOutputIsBounded(t *testing.T) {
	old := OutputLimit
	OutputLimit = 256 << 10
	defer func() { OutputLimit = old }()
	o := NewOutput()
	defer o.Close()
	w, err := o.writer()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	chunk := []byte(strings.Repeat("x", 4096))
	// Before Limit (the entrypoint still runs): drained, the end kept.
	for i := 0; i < 256; i++ {
		if _, err := w.Write(chunk); err != nil {
			t.Fatalf("write before the limit applies: %v", err)
		}
	}
	o.Limit()
	var werr error
	for i := 0; i < 1000 && werr == nil; i++ {
		_, werr = w.Write(chunk)
	}
	if !errors.Is(werr, syscall.EPIPE) {
		t.Fatalf("wrote 4 MB past a 256 KiB limit: %v", werr)
	}
	if got := o.Total() - 256*4096; got > OutputLimit+64<<10 {
		t.Errorf("read %d bytes, limit %d", got, OutputLimit)
	}
	if s := o.String(); len(s) > outputTail+200 || !strings.Contains(s, "more output than the limit") {
		t.Errorf("tail of %d bytes ending %q", len(s), s[max(len(s)-80, 0):])
	}
}

// What a process wrote before it exited is there once Settle returns; after
// Close, writes fail.
func TestOutputSettleAndClose(t *testing.T) {
	o := NewOutput()
	w, err := o.writer()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("crun: something failed\n"))
	if got := o.Settle(); got != "crun: something failed\n" {
		t.Errorf("settled %q", got)
	}
	o.Close()
	done := make(chan error, 1)
	go func() { _, err := w.Write([]byte("more")); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EPIPE) {
			t.Errorf("write after Close: %v, want EPIPE", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write after Close blocked")
	}
	w.Close()
}
