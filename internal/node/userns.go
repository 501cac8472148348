package node

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// newUserNS returns a user namespace in which uid and gid are 0, for
// idmapped mounts: the namespace lives as long as the file is open. A
// short-lived process of ours (init, which only waits) makes it.
func newUserNS(uid, gid uint32) (*os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "init")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(uid), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(gid), Size: 1}},
	}
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
