package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

func TestDefaultLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		in             Options
		cacheFS, tmpFS int64
		want           Options
	}{
		{name: "derived", cacheFS: 1000 << 30, tmpFS: 1000 << 30,
			want: Options{MaxBytes: 500 << 30, MaxImageSize: DefaultMaxImageSize, MaxPullsPerUser: 2}},
		{name: "small disk", cacheFS: 2 << 30, tmpFS: 1 << 30,
			want: Options{MaxBytes: 1 << 30, MaxImageSize: 512 << 20, MaxPullsPerUser: 2}},
		{name: "explicit", in: Options{MaxBytes: 7, MaxImageSize: 8, MaxPullsPerUser: 9}, cacheFS: 1 << 40, tmpFS: 1 << 40,
			want: Options{MaxBytes: 7, MaxImageSize: 8, MaxPullsPerUser: 9}},
		{name: "none", in: Options{MaxBytes: -1, MaxImageSize: -1, MaxPullsPerUser: -1}, cacheFS: 1 << 40, tmpFS: 1 << 40,
			want: Options{MaxBytes: -1, MaxImageSize: -1, MaxPullsPerUser: -1}},
	} {
		o := tc.in
		defaultLimits(&o, tc.cacheFS, tc.tmpFS)
		if o.MaxBytes != tc.want.MaxBytes || o.MaxImageSize != tc.want.MaxImageSize || o.MaxPullsPerUser != tc.want.MaxPullsPerUser {
			t.Errorf("%s: got %d %d %d, want %d %d %d", tc.name, o.MaxBytes, o.MaxImageSize, o.MaxPullsPerUser,
				tc.want.MaxBytes, tc.want.MaxImageSize, tc.want.MaxPullsPerUser)
		}
	}
}

// An open cache without limits in its options gets them from its disk.
func TestOpenDerivesLimits(t *testing.T) {
	c := openTestCache(t, nil, nil)
	fs, err := fsSize(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.o.MaxBytes != fs/2 || c.o.MaxImageSize != min(DefaultMaxImageSize, fs/2) || c.o.MaxPullsPerUser != DefaultMaxPullsPerUser {
		t.Errorf("limits %d %d %d on a file system of %d", c.o.MaxBytes, c.o.MaxImageSize, c.o.MaxPullsPerUser, fs)
	}
}

func randomBody(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// An image over max_image_size is refused: by its layers' declared sizes
// before any download, else as its layers are applied (a layer of zeroes
// that compresses to nothing), and a squashfs file or archive by its size.
func TestMaxImageSize(t *testing.T) {
	reg := newFakeRegistry(t)
	big := newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "random", Body: randomBody(t, 64<<10)}})
	bigRef := reg.add("test/big", "1", big)
	bomb := newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "zeroes", Body: strings.Repeat("\x00", 4<<20)}})
	bombRef := reg.add("test/bomb", "1", bomb)
	small := newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "small", Body: "x"}})
	smallRef := reg.add("test/small", "1", small)
	c := openTestCache(t, []string{reg.host}, func(o *Options) { o.MaxImageSize = 32 << 10 })

	_, err := c.Get(context.Background(), bigRef, PullOptions{UID: 1000})
	if !errors.Is(err, image.ErrTooLarge) {
		t.Fatalf("declared: %v, want image.ErrTooLarge", err)
	}
	assertOneLine(t, err, bigRef, "image too large", "has layers of more than 32K", "max_image_size", "ask your admin")
	if _, n := reg.counts(digestOf(big.layers[0])); n != 0 {
		t.Errorf("the too-large layer was downloaded %d times", n)
	}
	_, err = c.Get(context.Background(), bombRef, PullOptions{UID: 1000})
	if !errors.Is(err, image.ErrTooLarge) {
		t.Fatalf("unpacked: %v, want image.ErrTooLarge", err)
	}
	assertOneLine(t, err, bombRef, "image too large", "unpacks to more than 32K", "ask your admin")
	assertClean(t, c)
	if _, err := c.Get(context.Background(), smallRef, PullOptions{UID: 1000}); err != nil {
		t.Errorf("small image: %v", err)
	}

	file := publicCopy(t, imagetest.MakeSquashfs(t, map[string]string{"random": randomBody(t, 64<<10)}, "-noI", "-noD"), 0o644)
	if _, err := c.Get(context.Background(), file, PullOptions{UID: nobody, GID: nobody}); !errors.Is(err, image.ErrTooLarge) {
		t.Errorf("squashfs file: %v, want image.ErrTooLarge", err)
	} else {
		assertOneLine(t, err, file, "image too large", "is more than 32K")
	}
	dir, err := os.MkdirTemp("", "squash-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	big.writeLayout(t, dir, "1")
	if _, err := c.Get(context.Background(), "oci:"+dir+":1", PullOptions{UID: nobody, GID: nobody}); !errors.Is(err, image.ErrTooLarge) {
		t.Errorf("oci layout: %v, want image.ErrTooLarge", err)
	}
}

// A user has at most MaxPullsPerUser pulls running; one more waits, and is
// told so, while other users' pulls go on; a waiting pull whose caller
// gives up is gone.
func TestMaxPullsPerUser(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.blobDelay = 300 * time.Millisecond
	var refs []string
	for i := range 4 {
		im := newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: fmt.Sprint("f", i), Body: fmt.Sprint(i)}})
		refs = append(refs, reg.add(fmt.Sprint("test/img", i), "1", im))
	}
	c := openTestCache(t, []string{reg.host}, func(o *Options) { o.MaxPullsPerUser = 2 })
	var most, waited atomic.Int32
	watch := func(p Progress) {
		if p.Phase == "note" && strings.Contains(p.Message, "max_pulls_per_user") {
			waited.Add(1)
		}
		if n := int32(c.slots.running(1000)); n > most.Load() {
			most.Store(n)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() {
			_, errs[i] = c.Get(context.Background(), refs[i], PullOptions{UID: 1000, Progress: watch})
		})
	}
	// Another user is not held up by the first one's queue.
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if _, err := c.Get(context.Background(), refs[3], PullOptions{UID: 1001}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("another user's pull took %s", d)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull %d: %v", i, err)
		}
	}
	if most.Load() > 2 || waited.Load() != 1 {
		t.Errorf("at most %d pulls at once (want 2), %d told to wait (want 1)", most.Load(), waited.Load())
	}
	if n := c.slots.running(1000); n != 0 {
		t.Errorf("%d slots still held", n)
	}

	// A waiting pull ends with its caller.
	held := []func(){}
	for range 2 {
		release, err := c.slots.acquire(context.Background(), 1002, func(Progress) {})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	im := newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "late", Body: "late"}})
	if _, err := c.Get(ctx, reg.add("test/late", "1", im), PullOptions{UID: 1002}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting pull: %v, want its deadline", err)
	}
	for _, r := range held {
		r()
		r() // idempotent
	}
	// The given-up pull's flight may still be ending, and take a freed
	// slot on its way out: it gives it back as it ends.
	n := c.slots.running(1002)
	for end := time.Now().Add(2 * time.Second); n != 0 && time.Now().Before(end); n = c.slots.running(1002) {
		time.Sleep(10 * time.Millisecond)
	}
	if n != 0 {
		t.Errorf("%d slots held after release", n)
	}
}

// A pull keeps its user's slot until it ends, not until its caller gives
// up: work that cannot stop at once (Get's pull, as the caller leaves)
// stays counted against max_pulls_per_user, so a user cannot start more
// by cancelling clients.
func TestPullKeepsSlotUntilItEnds(t *testing.T) {
	slots := newUserSlots(1, 0)
	var g flightGroup
	slot := &slotOnce{slots: slots, uid: 1000, report: func(Progress) {}}
	if err := slot.hold(context.Background()); err != nil {
		t.Fatal(err)
	}
	finish, ended := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	start := func() func() {
		end := slot.keep()
		return func() { end(); close(ended) }
	}
	_, err := g.do(ctx, "k", nil, start, func(context.Context, func(Progress)) (*Image, error) {
		<-finish // deaf to its context, as an extractor was
		return nil, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("do = %v, want context.Canceled", err)
	}
	slot.free()
	if n := slots.running(1000); n != 1 {
		t.Fatalf("%d slots held while the pull runs on, want 1", n)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := slots.acquire(short, 1000, func(Progress) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("another pull of the user's started while the first runs on: %v", err)
	}
	close(finish)
	<-ended
	if n := slots.running(1000); n != 0 {
		t.Fatalf("%d slots held after the pull ended, want 0", n)
	}
	// Once the pull has ended, the Get's free gives the slot back itself.
	slot2 := &slotOnce{slots: slots, uid: 1000, report: func(Progress) {}}
	if err := slot2.hold(context.Background()); err != nil {
		t.Fatal(err)
	}
	slot2.keep()()
	if n := slots.running(1000); n != 1 {
		t.Fatalf("the slot went with the pull, before the Get freed it: %d held", n)
	}
	slot2.free()
	slot2.free()
	if n := slots.running(1000); n != 0 {
		t.Fatalf("%d slots held after free, want 0", n)
	}
}

// All users' pulls together are bounded too (max_pulls): one more waits,
// told which limit holds it, and starts when any user's pull ends; root's
// are not counted.
func TestMaxPullsAllUsers(t *testing.T) {
	slots := newUserSlots(2, 2)
	var held []func()
	for _, uid := range []uint32{1000, 1001} {
		release, err := slots.acquire(context.Background(), uid, func(Progress) {})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	if _, err := slots.acquire(context.Background(), 0, func(Progress) {}); err != nil {
		t.Fatalf("root: %v", err)
	}
	notes := make(chan string, 4)
	got := make(chan error, 1)
	go func() {
		release, err := slots.acquire(context.Background(), 1002, func(p Progress) { notes <- p.Message })
		if err == nil {
			defer release()
		}
		got <- err
	}()
	if n := <-notes; !strings.Contains(n, "(max_pulls)") {
		t.Fatalf("note %q, want the node-wide limit named", n)
	}
	select {
	case err := <-got:
		t.Fatalf("a third pull started past max_pulls: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	held[0]()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	held[1]()
	if n := slots.running(1000) + slots.running(1001) + slots.running(1002); n != 0 {
		t.Fatalf("%d slots held after all released", n)
	}
}

// Waiting pulls start in the order they came: a user who queues more
// pulls does not pass another user's that waited longer for max_pulls
// (outside review 13: every freed slot went to the same user's next pull).
func TestPullSlotsServeInOrder(t *testing.T) {
	slots := newUserSlots(2, 4)
	hold := func(uid uint32) func() {
		t.Helper()
		release, err := slots.acquire(context.Background(), uid, func(Progress) {})
		if err != nil {
			t.Fatal(err)
		}
		return release
	}
	alice := []func(){hold(1001), hold(1001)}
	bob := []func(){hold(1002), hold(1002)}
	started := make(chan string, 8)
	wait := func(who string, uid uint32) {
		notes := make(chan struct{})
		go func() {
			release, err := slots.acquire(context.Background(), uid, func(Progress) { close(notes) })
			if err != nil {
				t.Error(err)
				return
			}
			started <- who
			t.Cleanup(release)
		}()
		<-notes // queued
	}
	wait("carol", 1003)
	wait("bob's third", 1002)
	wait("bob's fourth", 1002)
	bob[0]()
	if got := <-started; got != "carol" {
		t.Fatalf("the freed slot went to %s, want carol's pull, which waited longest", got)
	}
	select {
	case got := <-started:
		t.Fatalf("%s started past max_pulls", got)
	case <-time.After(50 * time.Millisecond):
	}
	alice[0]()
	if got := <-started; got != "bob's third" {
		t.Fatalf("then %s, want bob's third", got)
	}
	alice[1]()
	bob[1]()
	if got := <-started; got != "bob's fourth" {
		t.Fatalf("then %s, want bob's fourth", got)
	}
}

// A pull whose caller gives up while it waits leaves the queue; one
// granted as its caller gave up passes the slot on.
func TestPullSlotsWaiterGivesUp(t *testing.T) {
	slots := newUserSlots(1, 0)
	release, err := slots.acquire(context.Background(), 1001, func(Progress) {})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := slots.acquire(ctx, 1001, func(Progress) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting pull: %v, want its deadline", err)
	}
	release()
	if n := slots.running(1001); n != 0 {
		t.Fatalf("%d slots held after the waiter gave up and the holder released", n)
	}
	if len(slots.queue) != 0 {
		t.Fatalf("%d waiters left in the queue", len(slots.queue))
	}
}
