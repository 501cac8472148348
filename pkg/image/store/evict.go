package store

import (
	"slices"
	"strings"
)

// evictLocked applies the cache's limits and returns the entries it
// removed. Pinned images are never removed. With all, every unpinned
// image goes. Otherwise images unused for longer than MaxAge go, then,
// least recently used first, images until the total is within MaxBytes;
// an image used within evictGrace is spared the size limit (it was just
// handed out and is about to be pinned), so the cache may stay over
// MaxBytes for that long.
func (c *Cache) evictLocked(all bool) []*entry {
	now := c.now()
	var total int64
	lru := make([]*entry, 0, len(c.ix.Images))
	for _, e := range c.ix.Images {
		total += e.Size
		lru = append(lru, e)
	}
	slices.SortFunc(lru, func(a, b *entry) int {
		if c := a.LastUsed.Compare(b.LastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	var gone []*entry
	for _, e := range lru {
		if c.pins[e.Digest] > 0 {
			continue
		}
		idle := now.Sub(e.LastUsed)
		switch {
		case all,
			c.o.MaxAge > 0 && idle > c.o.MaxAge,
			c.o.MaxBytes > 0 && total > c.o.MaxBytes && idle > evictGrace:
			c.deleteLocked(e)
			total -= e.Size
			gone = append(gone, e)
		}
	}
	if len(gone) > 0 {
		if err := c.ix.save(c.dir); err != nil {
			c.log.Warn("cannot save the index", "err", err)
		}
		if c.o.Evicted != nil {
			c.o.Evicted(len(gone))
		}
	}
	return gone
}
