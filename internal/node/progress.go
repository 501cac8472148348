package node

import (
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image/store"
)

// progressLine rate-limits progress lines; the cache reports from several
// goroutines, per layer. A cached image, ready at once, says nothing.
type progressLine struct {
	out func(string)
	ref string

	mu     sync.Mutex
	start  time.Time
	said   bool
	phase  string
	last   time.Time
	layers map[string][2]int64 // layer -> done, total
}

const (
	progressEvery = 3 * time.Second
	progressAfter = time.Second // quiet for pulls shorter than this
)

func (p *progressLine) report(r store.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start.IsZero() {
		p.start = time.Now()
	}
	if !p.said && (time.Since(p.start) < progressAfter || r.Phase == "done") {
		return
	}
	p.said = true
	if r.Layer != "" {
		if p.layers == nil {
			p.layers = map[string][2]int64{}
		}
		p.layers[r.Layer] = [2]int64{r.Done, r.Total}
		var done, total int64
		for _, v := range p.layers {
			done, total = done+v[0], total+v[1]
		}
		r.Done, r.Total = done, total
	}
	key := r.Phase + r.Message
	if r.Layer != "" && r.Message == "" {
		key = r.Phase
	}
	if key == p.phase && time.Since(p.last) < progressEvery {
		return
	}
	p.phase, p.last = key, time.Now()
	p.out(describe(p.ref, r))
}
