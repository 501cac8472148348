package store

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/podman-hpc/podman-hpc/pkg/charge"
)

// flightGroup runs one function per key at a time and hands its result to
// every caller that asked for that key meanwhile (like x/sync/singleflight),
// with two differences that matter for pulls started by srun: every caller
// gets the progress reports, and the work is cancelled only when the last
// caller has given up, not when the first one does.
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done    chan struct{}
	img     *Image
	err     error
	cancel  context.CancelCauseFunc
	waiters int // under flightGroup.mu

	subMu   sync.Mutex
	nextID  int
	subs    map[int]func(Progress)
	placers map[int]charge.Placer // the callers' (package charge), by subscription
}

func (f *flight) report(p Progress) {
	f.subMu.Lock()
	subs := make([]func(Progress), 0, len(f.subs))
	for _, s := range f.subs {
		subs = append(subs, s)
	}
	f.subMu.Unlock()
	for _, s := range subs {
		s(p)
	}
}

// subscribe adds a caller: fn (may be nil) gets the flight's reports,
// and the flight's helpers may be charged where place (may be nil: the
// daemon's own cgroups) puts them, until unsubscribe.
func (f *flight) subscribe(fn func(Progress), place charge.Placer) (unsubscribe func()) {
	f.subMu.Lock()
	defer f.subMu.Unlock()
	id := f.nextID
	f.nextID++
	if fn != nil {
		f.subs[id] = fn
	}
	f.placers[id] = place
	return func() {
		f.subMu.Lock()
		delete(f.subs, id)
		delete(f.placers, id)
		f.subMu.Unlock()
	}
}

// place charges a helper the flight starts to one of its callers, the
// earliest that is still there and whose place takes it: a pull several
// callers share goes on for the others when the one it was charged to
// has gone (its process ended), rather than failing for them all.
func (f *flight) place(pid int) error {
	f.subMu.Lock()
	ids := make([]int, 0, len(f.placers))
	for id := range f.placers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	placers := make([]charge.Placer, 0, len(ids))
	for _, id := range ids {
		placers = append(placers, f.placers[id])
	}
	f.subMu.Unlock()
	err := errors.New("every caller of the pull has gone")
	for _, p := range placers {
		if p == nil {
			return nil // a root caller's: the daemon's own cgroups
		}
		if err = p(pid); err == nil {
			return nil
		}
	}
	return err
}

// running reports whether a flight for key is in progress: a caller would
// join it rather than start one.
func (g *flightGroup) running(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.m[key]
	return ok
}

// do calls fn once for key and returns its result to every concurrent
// caller with that key. fn gets a context detached from the callers'
// (values kept): it is cancelled, with the last caller's cause, once every
// caller's ctx is done; a caller whose ctx ends returns context.Cause(ctx)
// at once. progress (may be nil) receives fn's reports while the caller
// waits. The returned Image is shared: callers must not modify it.
// start (may be nil) is called, before do returns, only by the caller
// that starts the flight: what it takes (a hold on a source, a pull slot)
// is the flight's, and the func it returns gives it back once fn has
// returned, however early the caller gives up.
func (g *flightGroup) do(ctx context.Context, key string, progress func(Progress),
	start func() (end func()),
	fn func(ctx context.Context, report func(Progress)) (*Image, error),
) (*Image, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*flight{}
	}
	f, ok := g.m[key]
	var unsubscribe func()
	if !ok {
		fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel,
			subs: map[int]func(Progress){}, placers: map[int]charge.Placer{}}
		fctx = charge.With(fctx, f.place)
		g.m[key] = f
		// Before fn starts: its first reports (a note about the user's
		// auth file, say) are this caller's too.
		unsubscribe = f.subscribe(progress, charge.Of(ctx))
		end := func() {}
		if start != nil {
			end = start()
		}
		go func() {
			img, err := fn(fctx, f.report)
			end()
			g.mu.Lock()
			if g.m[key] == f {
				delete(g.m, key)
			}
			g.mu.Unlock()
			f.img, f.err = img, err
			close(f.done)
			cancel(nil)
		}()
	}
	f.waiters++
	g.mu.Unlock()
	if unsubscribe == nil {
		unsubscribe = f.subscribe(progress, charge.Of(ctx))
	}
	defer unsubscribe()

	select {
	case <-f.done:
		return f.img, f.err
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Nobody wants it any more. Later callers start afresh rather
			// than join a flight that is being cancelled.
			f.cancel(context.Cause(ctx))
			if g.m[key] == f {
				delete(g.m, key)
			}
		}
		g.mu.Unlock()
		return nil, context.Cause(ctx)
	}
}
