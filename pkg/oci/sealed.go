package oci

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// sealedSeals are the seals crun and runc look for on /proc/self/exe: a
// binary that carries all four cannot be changed by anyone, so they skip
// the copy of themselves they otherwise make at every start (their guard
// against CVE-2019-5736, a container overwriting the host's runtime through
// /proc/PID/exe). That copy and the second exec are a quarter of a crun
// run here, and 8 MB copied per runc init.
const sealedSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// sealedBinary is an in-memory, sealed copy of the runtime binary that the
// daemon execs through /proc/self/fd/N. The copy is made again when the
// file on disk changes (a package upgrade), so the daemon runs what is
// installed.
type sealedBinary struct {
	path string

	// mu is held for reading from a command's start until its exec: the
	// copy a child is about to exec is not closed under it.
	mu   sync.RWMutex
	f    *os.File
	stat unix.Stat_t // of path, when f was made
}

// acquire returns the path to exec and a function to call once the command
// has started. When no copy can be made it returns the binary's own path:
// the runtime then copies itself, as it does anyway.
func (s *sealedBinary) acquire() (string, func()) {
	var st unix.Stat_t
	if err := unix.Stat(s.path, &st); err != nil {
		return s.path, func() {}
	}
	s.mu.RLock()
	if s.f == nil || !sameFile(&s.stat, &st) {
		s.mu.RUnlock()
		s.refresh(&st)
		s.mu.RLock()
	}
	if s.f == nil {
		s.mu.RUnlock()
		return s.path, func() {}
	}
	return fmt.Sprintf("/proc/self/fd/%d", s.f.Fd()), s.mu.RUnlock
}

// refresh copies the binary again; st is its stat before the copy.
func (s *sealedBinary) refresh(st *unix.Stat_t) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil && sameFile(&s.stat, st) {
		return // another command's start did it
	}
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	if f, err := sealedCopy(s.path); err == nil {
		s.f, s.stat = f, *st
	}
}

func sameFile(a, b *unix.Stat_t) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size && a.Mtim == b.Mtim && a.Ctim == b.Ctim
}

// sealedCopy copies the file at path into a memfd and seals it. The memfd
// is close-on-exec: the child execs it by path before exec closes it.
func sealedCopy(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("sealed:"+path, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd for %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), "sealed:"+path)
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy %s: %w", path, err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, sealedSeals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal the copy of %s: %w", path, err)
	}
	return f, nil
}
