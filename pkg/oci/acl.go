package oci

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// POSIX ACL xattr format (linux/posix_acl_xattr.h), little-endian.
const (
	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclMask     = 0x10
	aclOther    = 0x20
	aclNoID     = 0xffffffff
)

// AllowTraverse makes dir root's alone (mode 0700) except that uid may
// pass through it (search, no listing, no writing), with a POSIX access
// ACL. With --container-remap-root the runtime reaches the bundle as the
// job user's mapped root, to whom root's directories are other's: an ACL
// lets that one user through where "other" bits would let every user.
func AllowTraverse(dir string, uid uint32) error {
	entries := []struct {
		tag, perm uint16
		id        uint32
	}{
		{aclUserObj, 7, aclNoID},
		{aclUser, 1, uid},
		{aclGroupObj, 0, aclNoID},
		{aclMask, 1, aclNoID},
		{aclOther, 0, aclNoID},
	}
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	if err := unix.Lsetxattr(dir, "system.posix_acl_access", b, 0); err != nil {
		return fmt.Errorf("let uid %d through %s (POSIX ACL; the state directory's file system must support ACLs): %w", uid, dir, err)
	}
	return nil
}
