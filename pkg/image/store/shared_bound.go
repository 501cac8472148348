package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// A user's share of the site image store. Every image a user's pull built
// and stored is counted to that user (sharedEntry.UID); before one more is
// stored, that user's least recently used ones are removed until the new
// one fits under maxPerUser. So no user fills the store for the others,
// however many distinct images of their own they run; another user's
// images are never removed for them. One node at a time stores a user's
// images (their quota lease), so that nodes storing at once cannot each
// find room and overshoot together.
//
//	locks/user-UID.quota  the lease of the node storing one of UID's images

// ErrOverUserShare: an image larger than a user's whole share of the
// store; the nodes pull it for themselves.
var ErrOverUserShare = errors.New("larger than a user's share of the site image store (shared_store_max_per_user)")

func (s *sharedStore) quotaLockPath(uid uint32) string {
	return filepath.Join(s.locks, fmt.Sprintf("user-%d.quota", uid))
}

// quotaLease takes uid's quota lease, waiting while a live node holds it
// (it copies a finished file into the store, which its user cannot
// stall), with a note to the user; a dead node's (leaseWatch) is taken
// over, and what that node was writing goes (sweepTemps).
func (s *sharedStore) quotaLease(uid uint32, report func(Progress)) (release func(), err error) {
	p := s.quotaLockPath(uid)
	w := s.watch(p)
	for {
		release, err := s.takeLease(p, uid)
		if !errors.Is(err, errLockHeld) {
			return release, err
		}
		if w.dead() {
			s.takeOver(p, "user "+fmt.Sprint(uid))
			s.sweepTemps()
			continue
		}
		w.note(report, "finish storing another of your images in the site image store")
		time.Sleep(s.poll)
	}
}

// storedImage is one image of the store, as makeRoom sees it.
type storedImage struct {
	hex  string
	size int64
	used time.Time // its entry's mtime: stored, or last copied out
}

// makeRoom removes uid's least recently used images from the store until
// size more bytes fit in the user's share; the caller holds uid's quota
// lease.
func (s *sharedStore) makeRoom(uid uint32, size int64) error {
	if size > s.maxPerUser {
		return fmt.Errorf("%w (%s; the share is %s)", ErrOverUserShare, image.HumanSize(size), image.HumanSize(s.maxPerUser))
	}
	mine, err := s.imagesOf(uid)
	if err != nil {
		return err
	}
	var held int64
	for _, m := range mine {
		held += m.size
	}
	slices.SortFunc(mine, func(a, b storedImage) int { return a.used.Compare(b.used) })
	for _, m := range mine {
		if held+size <= s.maxPerUser {
			break
		}
		// The entry first: from then on no node takes the image from
		// the store; one copying it now fails its check or finishes.
		if err := os.Remove(filepath.Join(s.images, m.hex+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Remove(filepath.Join(s.images, m.hex+".squashfs")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		held -= m.size
		s.log.Info("site image store: removed a user's least recently used image for a new one (shared_store_max_per_user)",
			"uid", uid, "digest", "sha256:"+m.hex, "size", m.size)
	}
	return nil
}

// imagesOf lists the images of the store counted to uid. An entry that
// does not decode, or names no user (an older daemon's), counts to no one.
func (s *sharedStore) imagesOf(uid uint32) ([]storedImage, error) {
	names, err := os.ReadDir(s.images)
	if err != nil {
		return nil, err
	}
	var out []storedImage
	for _, n := range names {
		hex, ok := strings.CutSuffix(n.Name(), ".json")
		if !ok || !n.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.images, n.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		var e sharedEntry
		if json.Unmarshal(b, &e) != nil || e.UID == nil || *e.UID != uid {
			continue
		}
		fi, err := n.Info()
		if err != nil {
			continue
		}
		// An entry whose file is gone (a source recorded while the
		// image was removed) holds nothing: the store has no such image.
		if _, err := os.Lstat(filepath.Join(s.images, hex+".squashfs")); err != nil {
			continue
		}
		out = append(out, storedImage{hex: hex, size: e.Size, used: fi.ModTime()})
	}
	return out, nil
}

// used marks d's entry as just used (its mtime), so that its builder's
// share keeps it over images nobody takes; best effort.
func (s *sharedStore) used(d string) {
	now := time.Now()
	os.Chtimes(s.entryPath(d), now, now)
}
