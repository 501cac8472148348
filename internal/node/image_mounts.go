package node

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

// imageMounts holds the images' squashfs mounts: one per image on the
// node, shared by its containers. A mount is detached (oci.MountSquashfs):
// in no mount table, held by the daemon's file descriptor, dropped by the
// kernel if the daemon dies. After its last container it stays for linger,
// with the image pinned, so that the node's next step of that image starts
// warm: a fresh mount decompresses again every page a step reads (the MPI
// ring's MPI_Init rereads Open MPI's plugins, a task's exec its binary).
type imageMounts struct {
	linger time.Duration
	pin    func(digest string) (release func(), err error)
	log    *slog.Logger

	mu     sync.Mutex
	mounts map[string]*imageMount // by digest
}

type imageMount struct {
	file  *os.File
	users int
	// While it lingers: the timer that drops it, and its pin (its
	// containers pin it otherwise).
	idle  *time.Timer
	unpin func()
}

func (mt *imageMount) stopLinger() {
	if mt.idle != nil {
		mt.idle.Stop()
		mt.idle = nil
	}
	if mt.unpin != nil {
		mt.unpin()
		mt.unpin = nil
	}
}

func newImageMounts(linger time.Duration, pin func(string) (func(), error), log *slog.Logger) *imageMounts {
	return &imageMounts{linger: linger, pin: pin, log: log, mounts: map[string]*imageMount{}}
}

// acquire mounts the image, or shares its mount, for one more container,
// and returns the path of the image's root (valid in this process).
func (im *imageMounts) acquire(img *image) (string, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	mt := im.mounts[img.Digest]
	if mt == nil {
		f, err := oci.MountSquashfs(img.Path)
		if err != nil {
			return "", err
		}
		mt = &imageMount{file: f}
		im.mounts[img.Digest] = mt
	}
	mt.stopLinger()
	mt.users++
	return rootOf(mt), nil
}

// root returns the path of a mounted image's root, "" when not mounted.
func (im *imageMounts) root(digest string) string {
	im.mu.Lock()
	defer im.mu.Unlock()
	if mt := im.mounts[digest]; mt != nil {
		return rootOf(mt)
	}
	return ""
}

func rootOf(mt *imageMount) string { return fmt.Sprintf("/proc/self/fd/%d", mt.file.Fd()) }

// release ends one container's use; the last one starts the linger.
func (im *imageMounts) release(digest string) {
	im.mu.Lock()
	defer im.mu.Unlock()
	mt := im.mounts[digest]
	if mt == nil {
		return
	}
	if mt.users--; mt.users > 0 {
		return
	}
	if im.linger <= 0 {
		im.dropLocked(digest, mt)
		return
	}
	unpin, err := im.pin(digest)
	if err != nil { // evicted meanwhile: nothing to keep warm
		im.dropLocked(digest, mt)
		return
	}
	mt.unpin = unpin
	mt.idle = time.AfterFunc(im.linger, func() {
		im.mu.Lock()
		defer im.mu.Unlock()
		if im.mounts[digest] == mt && mt.users == 0 {
			im.dropLocked(digest, mt)
		}
	})
}

// dropIdle drops the mounts no container uses of the images which
// reports (before rmi and prune, which their pins would stop); it returns
// how many it dropped.
func (im *imageMounts) dropIdle(which func(digest string) bool) int {
	im.mu.Lock()
	defer im.mu.Unlock()
	n := 0
	for d, mt := range im.mounts {
		if mt.users == 0 && which(d) {
			im.dropLocked(d, mt)
			n++
		}
	}
	return n
}

func (im *imageMounts) dropLocked(digest string, mt *imageMount) {
	mt.stopLinger()
	delete(im.mounts, digest)
	mt.file.Close() // the kernel unmounts once no overlay uses it either
	im.log.Debug("image unmounted", "digest", digest)
}
