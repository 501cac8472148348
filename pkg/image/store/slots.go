package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// What one user can make the daemon spend: pulls at once (userSlots,
// here), and disk per image (Options.MaxImageSize, an image.Budget per
// pull). The cache as a whole is bounded by MaxBytes, which defaults to a
// share of its file system.

// userSlots bounds how many pulls each user has running at once, and all
// users together (each pull's memory in the daemon is bounded, so this
// bounds the daemon's); a pull over either limit waits for another to
// end. Waiting pulls are served in the order they came, each as soon as
// both limits let it start: one user queueing more pulls cannot pass
// another user's that waited longer. Root's own pulls (podman-hpcd pull
// as root) are not counted.
type userSlots struct {
	max    int // per user; <= 0: no limit
	maxAll int // all users; <= 0: no limit

	mu    sync.Mutex
	used  map[uint32]int
	all   int
	queue []*slotWaiter // oldest first
}

// slotWaiter is a pull waiting for a slot; granted is closed once it has
// one.
type slotWaiter struct {
	uid     uint32
	granted chan struct{}
}

func newUserSlots(max, maxAll int) *userSlots {
	return &userSlots{max: max, maxAll: maxAll, used: map[uint32]int{}}
}

// acquire takes one of uid's slots, waiting while the limits hold it; the
// wait is reported as a "note" naming the limit. release gives the slot
// back (idempotent). It fails only when ctx ends, with its cause.
func (s *userSlots) acquire(ctx context.Context, uid uint32, report func(Progress)) (release func(), err error) {
	if (s.max <= 0 && s.maxAll <= 0) || uid == 0 {
		return func() {}, nil
	}
	var once sync.Once
	release = func() { once.Do(func() { s.release(uid) }) }
	s.mu.Lock()
	if s.fitsLocked(uid) {
		s.takeLocked(uid)
		s.mu.Unlock()
		return release, nil
	}
	w := &slotWaiter{uid: uid, granted: make(chan struct{})}
	s.queue = append(s.queue, w)
	msg := fmt.Sprintf("waiting: %d pulls already run on this node, the most it runs at once (max_pulls)", s.maxAll)
	if s.max > 0 && s.used[uid] >= s.max {
		msg = fmt.Sprintf("waiting: %d pulls of yours already run on this node, the most one user may (max_pulls_per_user)", s.max)
	}
	s.mu.Unlock()
	report(Progress{Phase: "note", Message: msg})
	select {
	case <-w.granted:
		return release, nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	select {
	case <-w.granted:
		// Granted as ctx ended: give it to the next one.
		s.mu.Unlock()
		release()
	default:
		s.queue = slices.DeleteFunc(s.queue, func(q *slotWaiter) bool { return q == w })
		s.mu.Unlock()
	}
	return nil, context.Cause(ctx)
}

// fitsLocked: both limits let one more of uid's pulls start.
func (s *userSlots) fitsLocked(uid uint32) bool {
	return (s.max <= 0 || s.used[uid] < s.max) && (s.maxAll <= 0 || s.all < s.maxAll)
}

func (s *userSlots) takeLocked(uid uint32) {
	s.used[uid]++
	s.all++
}

func (s *userSlots) release(uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used[uid]--; s.used[uid] <= 0 {
		delete(s.used, uid)
	}
	s.all--
	// The oldest waiters the limits now let start, in order; one its own
	// user's limit holds does not hold the others.
	s.queue = slices.DeleteFunc(s.queue, func(w *slotWaiter) bool {
		if !s.fitsLocked(w.uid) {
			return false
		}
		s.takeLocked(w.uid)
		close(w.granted)
		return true
	})
}

// slotOnce is one of uid's slots for one Get: taken by the first hold,
// kept by the next ones. It is given back once the Get has freed it and
// every pull that keeps it has ended: a pull the Get started may run on
// after its caller gave up (the work it waits for cannot always stop at
// once), and it stays counted against the user meanwhile.
type slotOnce struct {
	slots  *userSlots
	uid    uint32
	report func(Progress)

	holding sync.Mutex // one hold waits for a slot at a time

	mu      sync.Mutex // never held while waiting for a slot
	release func()     // nil: not held
	keepers int        // pulls that keep it
	freed   bool       // by the Get
}

func (s *slotOnce) hold(ctx context.Context) error {
	s.holding.Lock()
	defer s.holding.Unlock()
	s.mu.Lock()
	held := s.release != nil
	s.mu.Unlock()
	if held {
		return nil
	}
	release, err := s.slots.acquire(ctx, s.uid, s.report)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.release = release
	s.giveBackLocked() // the Get and its pulls may all have ended meanwhile
	return nil
}

// keep has a pull keep the slot until the returned func is called: the
// slot is not given back meanwhile, and a hold the pull makes takes it if
// the Get had not.
func (s *slotOnce) keep() (end func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
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
