package asuser

import "testing"

// A user's FUSE mount is told from root's (a site's) and from other file
// systems by the mount table alone.
func TestFuseOwnerIn(t *testing.T) {
	table := []byte(`22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:40 / /home/alice/sshfs rw,nosuid,nodev,relatime shared:20 - fuse.sshfs alice@host: rw,user_id=1000,group_id=1000
41 22 0:41 / /cvmfs/repo ro,nosuid,nodev,relatime shared:21 - fuse cvmfs2 ro,user_id=0,group_id=0,default_permissions,allow_other
42 22 0:42 / /mnt/blk rw,relatime - fuseblk /dev/sdb1 rw,user_id=1001,group_id=1001
`)
	for _, c := range []struct {
		id   uint64
		uid  uint64
		fuse bool
	}{{22, 0, false}, {40, 1000, true}, {41, 0, true}, {42, 1001, true}, {99, 0, false}} {
		uid, fuse, err := fuseOwnerIn(table, c.id)
		if err != nil || uid != c.uid || fuse != c.fuse {
			t.Errorf("mount %d: uid %d fuse %v err %v, want uid %d fuse %v", c.id, uid, fuse, err, c.uid, c.fuse)
		}
	}
}
