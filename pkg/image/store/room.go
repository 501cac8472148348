package store

import (
	"fmt"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Room in the cache (Options.MaxBytes) is held before anything is
// written into it: every copy or pull reserves the bytes it will write
// (a file's size, a SIF partition's, a site store copy's; a registry or
// local pull its layers' sizes, then its unpacked size before squashing)
// against what the images hold and what the other pulls in flight
// reserved. A reservation that does not fit evicts least-recently-used
// unpinned images first, and fails with image.ErrNoSpace only if the
// room cannot be made. publish turns it into the image's real size, under
// the same lock; a failed pull gives it back. So the images and the
// pulls in flight together never pass MaxBytes, however many pulls run.

// reserveGrace spares an image used this recently from eviction for a
// reservation: Get hands an image out and the caller pins it at once.
// It is shorter than evictGrace: a pull must not wait a minute, or be
// refused, because of an image just pulled and not used since.
const reserveGrace = 5 * time.Second

// reservation is room held in the cache for one image being written.
type reservation struct {
	c *Cache
	n int64 // under c.mu; 0 once released
}

// reserve holds n bytes of the cache for an image about to be written
// (what names it in errors), evicting to make room.
func (c *Cache) reserve(n int64, what string) (*reservation, error) {
	r := &reservation{c: c}
	if err := r.grow(n, what); err != nil {
		return nil, err
	}
	return r, nil
}

// grow raises the reservation to n bytes (a smaller n changes nothing).
func (r *reservation) grow(n int64, what string) error {
	c := r.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if n <= r.n {
		return nil
	}
	more := n - r.n
	if c.o.MaxBytes > 0 {
		if n > c.o.MaxBytes {
			return fmt.Errorf("%w: %s needs %s, more than the whole image cache of this node (cache_max_size %s): ask your admin to raise cache_max_size",
				image.ErrNoSpace, what, image.HumanSize(n), image.HumanSize(c.o.MaxBytes))
		}
		if c.heldLocked()+more > c.o.MaxBytes {
			c.evictFor(false, more, reserveGrace)
		}
		if held := c.heldLocked(); held+more > c.o.MaxBytes {
			// This pull's own room is not another's to wait for.
			others := c.reserved - r.n
			return fmt.Errorf("%w: %s needs %s in all, and the image cache of this node (cache_max_size %s) has %s held by images in use or just used and %s by other pulls in progress: retry once they are done, or ask your admin to raise cache_max_size",
				image.ErrNoSpace, what, image.HumanSize(n), image.HumanSize(c.o.MaxBytes),
				image.HumanSize(held-c.reserved), image.HumanSize(others))
		}
	}
	c.reserved += more
	r.n = n
	return nil
}

// release gives the room back (idempotent; a nil reservation is none).
func (r *reservation) release() {
	if r == nil {
		return
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	r.releaseLocked()
}

func (r *reservation) releaseLocked() {
	if r == nil {
		return
	}
	r.c.reserved -= r.n
	r.n = 0
}

// heldLocked is what the cache holds: its images and the reservations.
func (c *Cache) heldLocked() int64 {
	total := c.reserved
	for _, e := range c.ix.Images {
		total += e.Size
	}
	return total
}

// squashBound is the most mksquashfs may write for a root file system
// made of layers whose tar streams hold unpacked bytes (image.Budget's
// count): every file's data and a 512-byte header per entry, which is
// more than the squashfs needs for its data (incompressible blocks are
// stored as they are) and metadata, plus room for its tables and the
// padding of its end to 4K.
func squashBound(unpacked int64) int64 {
	return unpacked + unpacked/64 + 32<<10
}
