package stepcgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// mountPoint is one cgroup hierarchy's mount: the cgroup at its root, and
// where it is mounted.
type mountPoint struct {
	root, at string
	opts     []string // cgroup v1: the super options, controllers among them
}

// dir is where cgroup p of the hierarchy is in the file system.
func (m mountPoint) dir(p string) (string, bool) {
	rel, ok := strings.CutPrefix(path.Clean(p), path.Clean(m.root))
	if !ok || (rel != "" && !strings.HasPrefix(rel, "/") && m.root != "/") {
		return "", false
	}
	return filepath.Join(m.at, rel), true
}

// Mounts are the cgroup hierarchies a mount namespace has mounted.
type Mounts struct {
	v1 []mountPoint
	v2 *mountPoint
}

// DaemonMounts are the daemon's cgroup hierarchies, read once: a node
// mounts its cgroups at boot. Every placement (steps, kept containers,
// users' helpers) uses them.
var DaemonMounts = sync.OnceValues(ReadMounts)

// ReadMounts reads the calling thread's (/proc/thread-self/mountinfo: the
// main thread's may be parked in a sandbox's mount namespace, see
// oci.MountsUnder).
func ReadMounts() (Mounts, error) {
	data, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return Mounts{}, fmt.Errorf("cgroup mounts: %w", err)
	}
	return parseMounts(data), nil
}

// parseMounts keeps mountinfo's cgroup and cgroup2 mounts; the first of
// each hierarchy counts.
func parseMounts(mountinfo []byte) Mounts {
	var ms Mounts
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		m := mountPoint{root: unescape(f[3]), at: unescape(f[4]), opts: strings.Split(g[2], ",")}
		switch g[0] {
		case "cgroup2":
			if ms.v2 == nil {
				ms.v2 = &m
			}
		case "cgroup":
			ms.v1 = append(ms.v1, m)
		}
	}
	return ms
}

// mountOf is the mount of the hierarchy /proc/PID/cgroup names by its
// controllers ("freezer", "cpu,cpuacct", "name=systemd"), or of cgroup2.
func (ms Mounts) mountOf(controllers string, v2 bool) (mountPoint, bool) {
	if v2 {
		if ms.v2 == nil {
			return mountPoint{}, false
		}
		return *ms.v2, true
	}
	want := strings.Split(controllers, ",")
	for _, m := range ms.v1 {
		if containsAll(m.opts, want) {
			return m, true
		}
	}
	return mountPoint{}, false
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
