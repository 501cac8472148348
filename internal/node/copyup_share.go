package node

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// copyupShares bounds what read-only containers' copy-ups (ownForeign: the
// image's files of other owners, copied up as the user's at every start)
// take of state_dir, together: a tmpfs under /run as shipped, the node's
// memory, which slurmd and munge need too. One container copies at most
// foreignBudget; a user's containers on the node together at most
// copyupUserShare of state_dir's size, and everyone's at most half of it.
// A user who ran ten steps at once of an image holding 240 MB of such files
// filled it, and another user's steps failed (review of 2026-12-06).
type copyupShares struct {
	mu      sync.Mutex
	perUser int64 // 0: no bound (tests)
	total   int64
	// perEntry is what one entry costs beside its bytes: state_dir's
	// size over its inodes, so that the shares bound inodes too (a review
	// filled every inode of state_dir with empty files, 28 MB in all).
	perEntry int64
	used     map[uint32]int64
	all      int64
}

// copyupUserShare is the part of state_dir's size one user's copy-ups may
// hold on a node; at most copyupUserMax.
const (
	copyupUserShare = 8 // one eighth
	copyupUserMax   = 1 << 30
)

// newCopyupShares sizes the shares from stateDir's file system.
func newCopyupShares(stateDir string) *copyupShares {
	s := &copyupShares{used: map[uint32]int64{}}
	var st unix.Statfs_t
	if unix.Statfs(stateDir, &st) != nil {
		return s
	}
	size := int64(st.Blocks) * st.Bsize //nolint:gosec // block counts fit
	s.perUser, s.total = min(size/copyupUserShare, copyupUserMax), size/2
	if st.Files > 0 {
		s.perEntry = size / int64(st.Files) //nolint:gosec // inode counts fit
	}
	return s
}

// Copy-ups' words, for take's refusals: what is written, and how to write
// less.
const (
	copyupWhat = "the image's files of other owners than root, copied up at each container's start,"
	copyupFix  = "rebuild the image with its files root's (mksquashfs -all-root, or podman-hpcd import)"
)

// take charges one entry of n bytes of uid's, or refuses it, saying what
// would have been written (what) and how to need less (fix); it returns
// what it charged (n and the entry's inode), for give.
func (s *copyupShares) take(uid uint32, n int64, what, fix string) (int64, error) {
	if s == nil || s.perUser == 0 {
		return 0, nil
	}
	n += s.perEntry
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.used[uid]+n > s.perUser:
		return 0, fmt.Errorf("%s would pass your share of this node's state_dir (%d MiB across your containers here): end some of your steps on this node, or %s", what, s.perUser>>20, fix)
	case s.all+n > s.total:
		return 0, fmt.Errorf("%s would pass what this node's state_dir keeps for containers' files (%d MiB, all users' containers): retry later, or %s", what, s.total>>20, fix)
	}
	s.used[uid] += n
	s.all += n
	return n, nil
}

// give returns n bytes of uid's copy-ups (their container is gone).
func (s *copyupShares) give(uid uint32, n int64) {
	if s == nil || n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used[uid] -= n
	s.all -= n
	if s.used[uid] <= 0 {
		delete(s.used, uid)
	}
}

// force charges n bytes of uid's without a bound: an adopted container's,
// already on the node.
func (s *copyupShares) force(uid uint32, n int64) {
	if s == nil || n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used[uid] += n
	s.all += n
}
