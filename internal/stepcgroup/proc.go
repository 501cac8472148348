package stepcgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A Proc is a process whose cgroups are read: its pid and a pidfd of it,
// taken when it connected (SO_PEERPIDFD). A pid alone is not enough: the
// process may have exited and its pid gone to another user's process,
// whose cgroups the daemon would then read (a helper of the user's charged
// to the other user's job). What is read under a pid counts only if the
// pidfd's process is still alive after the read: a live process keeps its
// pid.
type Proc struct {
	PID int
	FD  *os.File // a pidfd of the process; nil: none (the read is refused)
}

// errGone is the read of a process that is no longer there.
var errGone = errors.New("the process that asked is gone")

// read returns /proc/PID/NAME of p, once p is known to be alive after the
// read.
func (p Proc) read(name string) ([]byte, error) {
	if p.PID <= 0 || p.FD == nil {
		return nil, fmt.Errorf("pid %d: no pidfd of it: %w", p.PID, errGone)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", p.PID, name))
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w: %v", p.PID, errGone, err)
	}
	if err := unix.PidfdSendSignal(int(p.FD.Fd()), 0, nil, 0); err != nil {
		return nil, fmt.Errorf("pid %d: %w: %v", p.PID, errGone, err)
	}
	return data, nil
}

// uid is p's real uid.
func (p Proc) uid() (uint32, error) {
	data, err := p.read("status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, err := strconv.ParseUint(f[0], 10, 32)
				return uint32(n), err
			}
		}
	}
	return 0, fmt.Errorf("pid %d: no Uid in its status", p.PID)
}
