package store

import (
	"context"
	"fmt"
	"sync"
)

// What one user can make the daemon spend: pulls at once (userSlots,
// here), and disk per image (Options.MaxImageSize, an image.Budget per
// pull). The cache as a whole is bounded by MaxBytes, which defaults to a
// share of its file system.

// userSlots bounds how many pulls each user has running at once; a pull
// over the limit waits for one of the user's others to end. Root's own
// pulls (podman-hpcd pull as root) are not counted.
type userSlots struct {
	max int // <= 0: no limit

	mu    sync.Mutex
	used  map[uint32]int
	freed chan struct{} // closed, and replaced, whenever a slot is freed
}

func newUserSlots(max int) *userSlots {
	return &userSlots{max: max, used: map[uint32]int{}, freed: make(chan struct{})}
}

// acquire takes one of uid's slots, waiting while they are all taken;
// the first wait is reported as a "note". release gives the slot back
// (idempotent). It fails only when ctx ends, with its cause.
func (s *userSlots) acquire(ctx context.Context, uid uint32, report func(Progress)) (release func(), err error) {
	if s.max <= 0 || uid == 0 {
		return func() {}, nil
	}
	told := false
	for {
		s.mu.Lock()
		if s.used[uid] < s.max {
			s.used[uid]++
			s.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { s.release(uid) }) }, nil
		}
		freed := s.freed
		s.mu.Unlock()
		if !told {
			told = true
			report(Progress{Phase: "note", Message: fmt.Sprintf(
				"waiting: %d pulls of yours already run on this node, the most one user may (max_pulls_per_user)", s.max)})
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

func (s *userSlots) release(uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used[uid]--; s.used[uid] <= 0 {
		delete(s.used, uid)
	}
	close(s.freed)
	s.freed = make(chan struct{})
}

// slotOnce is one of uid's slots for one Get: taken by the first hold,
// kept by the next ones. It is given back once the Get has freed it and
// every pull that kept it has ended: a pull the Get started may run on
// after its caller gave up (the work it waits for cannot always stop at
// once), and it stays counted against the user meanwhile.
type slotOnce struct {
	slots  *userSlots
	uid    uint32
	report func(Progress)

	mu      sync.Mutex
	release func() // nil: not held
	keepers int    // pulls that keep it
	freed   bool   // by the Get
}

func (s *slotOnce) hold(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release != nil {
		return nil
	}
	release, err := s.slots.acquire(ctx, s.uid, s.report)
	if err != nil {
		return err
	}
	s.release = release
	return nil
}

// keep has a pull keep the slot, which must be held, until the returned
// func is called.
func (s *slotOnce) keep() (end func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		panic("slotOnce.keep: the slot is not held")
	}
	s.keepers++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.keepers--
			s.giveBackLocked()
		})
	}
}

func (s *slotOnce) free() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.freed = true
	s.giveBackLocked()
}

func (s *slotOnce) giveBackLocked() {
	if s.freed && s.keepers == 0 && s.release != nil {
		s.release()
		s.release = nil
	}
}

// running is how many slots uid holds (for tests and logs).
func (s *userSlots) running(uid uint32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used[uid]
}
