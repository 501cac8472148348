package node

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image/store"
)

// Status is what podman-hpcd status shows of the node's containers and
// cache (the server adds the daemon's own facts).
type Status struct {
	Runtime string // the OCI runtime in use ("" when none works)
	// The cache: its directory, the bytes its images take, and the limits
	// in force (store.Cache.Limits: negative or 0, none).
	CacheDir      string
	CacheBytes    int64
	CacheImages   int
	CacheMaxBytes int64
	MaxImageSize  int64
	CacheMaxAge   time.Duration
	Pulls         []Pull // in progress, oldest first
}

// Pull is a pull in progress.
type Pull struct {
	Ref     string
	UID     uint32
	Started time.Time
	Phase   string // the cache's last report: resolving, downloading...
}

// Status returns the node's status; pulls are only uid's (root: all).
func (n *Node) Status(uid uint32) Status {
	st := Status{CacheDir: n.cfg.CacheDir}
	if n.mgr != nil {
		st.Runtime = n.mgr.rt.Command
	}
	for _, img := range n.store.cache.List(0) {
		st.CacheBytes += img.Size
		st.CacheImages++
	}
	st.CacheMaxBytes, st.MaxImageSize, st.CacheMaxAge = n.store.cache.Limits()
	for _, p := range n.store.pulls.list() {
		if uid == 0 || p.UID == uid {
			st.Pulls = append(st.Pulls, p)
		}
	}
	return st
}

// pullsInFlight are the node's pulls in progress.
type pullsInFlight struct {
	mu sync.Mutex
	m  map[*pullWatch]bool
}

// pullWatch follows one Get: whether it pulled (a miss), the bytes it
// downloaded, its last phase.
type pullWatch struct {
	ref     string
	uid     uint32
	started time.Time

	mu      sync.Mutex
	phase   string
	pulled  bool
	waiting bool             // told to wait for a pull slot
	layers  map[string]int64 // downloaded bytes by layer
}

func (f *pullsInFlight) start(ref string, uid uint32) *pullWatch {
	p := &pullWatch{ref: ref, uid: uid, started: time.Now(), phase: "starting", layers: map[string]int64{}}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[*pullWatch]bool{}
	}
	f.m[p] = true
	return p
}

func (f *pullsInFlight) end(p *pullWatch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, p)
}

// list returns the pulls in progress that are pulls (not cache hits, which
// last milliseconds), or wait for a slot to become one, oldest first.
func (f *pullsInFlight) list() []Pull {
	f.mu.Lock()
	var out []Pull
	for p := range f.m {
		p.mu.Lock()
		if p.pulled || p.waiting {
			out = append(out, Pull{Ref: p.ref, UID: p.uid, Started: p.started, Phase: p.phase})
		}
		p.mu.Unlock()
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b Pull) int { return a.Started.Compare(b.Started) })
	return out
}

// watch returns a progress function that notes what the cache reports,
// then passes it on to next (may be nil).
func (p *pullWatch) watch(next func(store.Progress)) func(store.Progress) {
	return func(r store.Progress) {
		p.mu.Lock()
		switch {
		case r.Phase == "exporting":
			// Which program, as whom: what an admin looks for.
			p.phase = r.Phase + " (" + r.Message + ")"
		case r.Phase == "downloading" && strings.HasPrefix(r.Message, "applying layer"):
			// A layer's turn in the pull's extraction (or stream): the
			// download may be over long since.
			p.phase = "extracting"
		case r.Phase == "downloading" && strings.HasPrefix(r.Message, "squashing layer"):
			p.phase = "squashing"
		case r.Phase == "note" && strings.HasPrefix(r.Message, "waiting: "):
			// Held by max_pulls_per_user or max_pulls: which, in its
			// last words.
			p.waiting = true
			p.phase = "waiting"
			if i := strings.LastIndex(r.Message, "("); i >= 0 {
				p.phase += " " + r.Message[i:]
			}
		case r.Phase != "note":
			p.phase = r.Phase
		}
		switch {
		case r.Phase == "downloading" || r.Phase == "squashing" || r.Phase == "exporting",
			r.Phase == "resolving" && strings.HasPrefix(r.Message, "copying "):
			p.pulled = true
		}
		if r.Phase == "downloading" && r.Layer != "" {
			p.layers[r.Layer] = max(p.layers[r.Layer], r.Done)
		}
		p.mu.Unlock()
		if next != nil {
			next(r)
		}
	}
}

// count tells the metrics of a finished Get: a hit, or a miss and its pull.
func (s *squashStore) count(p *pullWatch, err error) {
	p.mu.Lock()
	pulled := p.pulled
	var bytes int64
	for _, b := range p.layers {
		bytes += b
	}
	p.mu.Unlock()
	switch {
	case pulled:
		s.metrics.CacheMiss()
		s.metrics.Pulled(bytes, time.Since(p.started), err)
	case err == nil:
		s.metrics.CacheHit()
	default:
		// Refused before any download (unauthorized, no such tag): a
		// failed pull.
		s.metrics.Pulled(0, time.Since(p.started), err)
	}
}
