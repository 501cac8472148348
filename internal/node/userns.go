package node

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// maxSharedUserNS bounds how many users' namespaces sharedUserNS keeps.
const maxSharedUserNS = 1024

var sharedUserNSs struct {
	sync.Mutex
	m map[[2]uint32]*os.File
}

// sharedUserNS is newUserNS(uid, gid) made once per user for the daemon's
// life, so that a container's start does not pay a process's (about 2 ms):
// an idmapped mount holds its own reference, and the namespace holds
// nothing but the mapping. release closes it where it is not kept.
func sharedUserNS(uid, gid uint32) (f *os.File, release func(), err error) {
	key := [2]uint32{uid, gid}
	sharedUserNSs.Lock()
	defer sharedUserNSs.Unlock()
	if f := sharedUserNSs.m[key]; f != nil {
		return f, func() {}, nil
	}
	if f, err = newUserNS(uid, gid); err != nil {
		return nil, nil, err
	}
	if len(sharedUserNSs.m) >= maxSharedUserNS {
		return f, func() { f.Close() }, nil
	}
	if sharedUserNSs.m == nil {
		sharedUserNSs.m = map[[2]uint32]*os.File{}
	}
	sharedUserNSs.m[key] = f
	return f, func() {}, nil
}

// newUserNS returns a user namespace in which uid and gid are 0, for
// idmapped mounts: the namespace lives as long as the file is open.
func newUserNS(uid, gid uint32) (*os.File, error) {
	return newUserNSMapped(
		[]syscall.SysProcIDMap{{ContainerID: 0, HostID: int(uid), Size: 1}},
		[]syscall.SysProcIDMap{{ContainerID: 0, HostID: int(gid), Size: 1}})
}

// newUserNSMapped returns a user namespace with these mappings. A
// short-lived process of ours (init, which only waits) makes it.
func newUserNSMapped(uids, gids []syscall.SysProcIDMap) (*os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "init")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: uids, GidMappings: gids}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("create a user namespace: %w", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	if err != nil {
		return nil, fmt.Errorf("open the user namespace: %w", err)
	}
	return f, nil
}
