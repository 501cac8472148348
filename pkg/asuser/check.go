package asuser

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// checkReceived checks, in the daemon, a descriptor the helper sent for w:
// that it is not on a FUSE file system a user mounted, and its type where
// a regular file is wanted. Neither check calls into the file system (the
// mount id from fdinfo, the mount table, statx with AT_STATX_DONT_SYNC),
// so a FUSE server that never answers cannot block the daemon here.
func checkReceived(f *os.File, w Want, mounts *mountTable) error {
	mntID, err := fdMountID(f)
	if err != nil {
		return err
	}
	table, err := mounts.read()
	if err != nil {
		return err
	}
	uid, fuse, err := fuseOwnerIn(table, mntID)
	if err != nil {
		return err
	}
	if fuse && uid != 0 {
		return ErrUserFUSE
	}
	if !w.Regular {
		return nil
	}
	var sx unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &sx); err != nil {
		return err
	}
	if sx.Mode&unix.S_IFMT != unix.S_IFREG {
		return ErrNotRegular
	}
	return nil
}

// fdMountID is the id of the mount f is on, from /proc/self/fdinfo (the
// kernel's own record: no call into the file system).
func fdMountID(f *os.File) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f.Fd()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no mnt_id in fdinfo")
}

// mountTable is the daemon's mount table, read once for all the
// descriptors of one call (every step opens its home and mount sources).
type mountTable struct{ b []byte }

func (m *mountTable) read() ([]byte, error) {
	if m.b == nil {
		b, err := os.ReadFile("/proc/thread-self/mountinfo")
		if err != nil {
			return nil, err
		}
		m.b = b
	}
	return m.b, nil
}

// fuseOwnerIn looks the mount up in the mount table b: whether it is a
// FUSE file system, and the uid that mounted it (its user_id option).
func fuseOwnerIn(b []byte, mntID uint64) (uid uint64, fuse bool, err error) {
	id := strconv.FormatUint(mntID, 10) + " "
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, id) {
			continue
		}
		_, after, ok := strings.Cut(line, " - ")
		if !ok {
			return 0, false, fmt.Errorf("mountinfo: a line without its separator")
		}
		fields := strings.Fields(after)
		if len(fields) < 3 {
			return 0, false, fmt.Errorf("mountinfo: a short line")
		}
		fstype := fields[0]
		if fstype != "fuse" && fstype != "fuseblk" && !strings.HasPrefix(fstype, "fuse.") {
			return 0, false, nil
		}
		for _, o := range strings.Split(fields[2], ",") {
			if v, ok := strings.CutPrefix(o, "user_id="); ok {
				uid, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return 0, true, fmt.Errorf("mountinfo: user_id %q", v)
				}
				return uid, true, nil
			}
		}
		return 0, true, nil
	}
	// Not in the table: a mount of another namespace (a detached mount
	// of the daemon's, which a user cannot have opened). Nothing to
	// refuse by ownership.
	return 0, false, sc.Err()
}
