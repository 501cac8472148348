package oci

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// copyBinary copies the executable at src to a file of the test's own, so
// that the test can change it.
func copyBinary(t *testing.T, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Skipf("no %s: %v", src, err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// The runtime runs from the sealed copy: its /proc/self/exe is the memfd,
// with the seals crun and runc check for.
func TestExecSealed(t *testing.T) {
	t.Parallel()
	readlink := copyBinary(t, "/usr/bin/readlink")
	rt := &Runtime{Command: readlink}
	rt.ExecSealed()
	out, err := rt.exec(context.Background(), "/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, "/memfd:sealed:"+readlink) {
		t.Errorf("the runtime ran from %q, not the sealed copy", got)
	}
	exe, started := rt.sealed.acquire()
	defer started()
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil || seals != sealedSeals {
		t.Errorf("seals %#x, %v; want %#x", seals, err, sealedSeals)
	}
}

// A changed binary (an upgrade) is copied again; a missing one is run by
// its path, which fails as it would without the copy.
func TestSealedCopyFollowsTheFile(t *testing.T) {
	t.Parallel()
	path := copyBinary(t, "/usr/bin/true")
	s := &sealedBinary{path: path}
	first, started := s.acquire()
	started()
	if first == path {
		t.Fatalf("no copy made of %s", path)
	}
	again, started := s.acquire()
	started()
	if again != first {
		t.Errorf("an unchanged binary was copied again: %s, then %s", first, again)
	}

	upgraded := append([]byte("#!/bin/sh\n# the new version\n"), make([]byte, 64)...)
	if err := os.WriteFile(path+".new", upgraded, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	exe, started := s.acquire()
	got, err := os.ReadFile(exe)
	started()
	if err != nil || string(got) != string(upgraded) {
		t.Errorf("after the upgrade the copy holds %q (%v)", got, err)
	}

	os.Remove(path)
	if exe, started := s.acquire(); exe != path {
		t.Errorf("a missing binary gave %s, want its path", exe)
	} else {
		started()
	}
}
