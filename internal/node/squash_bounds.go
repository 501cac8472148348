package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// What one user's squash of a container (podman-hpcd export,
// --container-save) may spend. mksquashfs runs as the user, but writes its
// file into the cache's scratch directory, root's and on the cache's disk,
// until it is copied to the user's path. It was state_dir, a tmpfs under
// /run that slurmd and munge need too: sixteen exports at once of a 131 MB
// container filled it, and slowed every other user's steps meanwhile.
// So a user has one such squash at a time on a node, each ends at
// helper_timeout, and its file is bounded as it is written.

// errSquashBusy refuses an export while another squash of the user's runs.
var errSquashBusy = errors.New("another export or --container-save of yours is running on this node (one at a time per user): retry when it has ended")

// squashLimits bound one squash: its deadline and its file's size.
type squashLimits struct {
	timeout time.Duration // <= 0: none
	maxSize int64         // <= 0: none
}

// squashLimits are the config's: helper_timeout, and max_image_size, never
// more than half the space the scratch directory's file system has free now.
func (n *Node) squashLimits() squashLimits {
	l := squashLimits{timeout: n.cfg.HelperTimeout, maxSize: n.cfg.MaxImageSize}
	var st unix.Statfs_t
	if unix.Statfs(n.mgr.scratch, &st) == nil {
		free := int64(st.Bavail) * st.Bsize / 2 //nolint:gosec // block counts fit
		if l.maxSize <= 0 || free < l.maxSize {
			l.maxSize = free
		}
	}
	return l
}

// userSquashes lets each user run one squash at a time.
type userSquashes struct {
	mu   sync.Mutex
	busy map[uint32]chan struct{} // closed when that user's squash ends
}

// take starts uid's squash. With wait, it waits for the user's running one
// to end (or ctx, whose cause it returns); without, it fails at once with
// errSquashBusy. release ends the squash.
func (u *userSquashes) take(ctx context.Context, uid uint32, wait bool) (release func(), err error) {
	for {
		u.mu.Lock()
		running, ok := u.busy[uid]
		if !ok {
			if u.busy == nil {
				u.busy = map[uint32]chan struct{}{}
			}
			done := make(chan struct{})
			u.busy[uid] = done
			u.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					u.mu.Lock()
					delete(u.busy, uid)
					u.mu.Unlock()
					close(done)
				})
			}, nil
		}
		u.mu.Unlock()
		if !wait {
			return nil, errSquashBusy
		}
		select {
		case <-running:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for your other export or save: %w", context.Cause(ctx))
		}
	}
}
