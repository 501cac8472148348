package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.podman.io/image/v5/signature"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/hooks"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
	"github.com/podman-hpc/podman-hpc/pkg/loopfs"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

// MinCacheFree is the free space below which Check refuses cache_dir's
// file system: not one image more fits there.
const MinCacheFree = 256 << 20

// Check reports what in c the daemon cannot work with, beyond what Load
// parses: a runtime that is not installed, a cache on a file system
// without space, a state directory, registries or policy file that is not
// what it must be (a policy that containers/image does not parse), a
// hooks.d file podman's code refuses, a site image store others can write.
// The error joins one line per problem, each naming the key and the fix;
// serve refuses to start on it, and check-config prints it. Warnings are
// what works but an admin should know (a metrics listener every host on
// the network can reach, a hook whose program is missing, a site image
// store not mounted).
func Check(c Config) (warnings []string, err error) {
	var errs []error
	if err := checkRuntime(c.Runtime); err != nil {
		errs = append(errs, err)
	}
	if err := checkCacheDir(c.CacheDir); err != nil {
		errs = append(errs, err)
	}
	if err := checkStateDir(c.StateDir); err != nil {
		errs = append(errs, err)
	}
	w, err := checkWritable(c)
	warnings = append(warnings, w...)
	if err != nil {
		errs = append(errs, err)
	}
	policy := c.Policy
	if policy == "" {
		policy = store.DefaultPolicyPath
	}
	if err := checkPolicy(policy); err != nil {
		errs = append(errs, err)
	}
	if c.RegistriesConf != "" {
		if err := checkFile("registries_conf", c.RegistriesConf, "fix the path, or remove the key for the system's"); err != nil {
			errs = append(errs, err)
		}
	}
	// Read as the daemon reads them at every container: a file podman's
	// code refuses fails every container until it is fixed.
	_, hookWarnings, err := hooks.ReadDirs(c.Hooks.Dirs)
	if err != nil {
		errs = append(errs, fmt.Errorf("hooks_dirs: %w; fix the file (oci-hooks(5)) or remove it", err))
	}
	for _, w := range hookWarnings {
		warnings = append(warnings, "hooks_dirs: "+w)
	}
	if c.SharedStore != "" {
		warning, err := checkSharedStore(c.SharedStore)
		if err != nil {
			errs = append(errs, err)
		}
		if warning != "" {
			warnings = append(warnings, warning)
		}
	}
	if c.MetricsListen != "" && !loopback(c.MetricsListen) {
		warnings = append(warnings, fmt.Sprintf("metrics_listen %s: not a loopback address: any host that reaches it reads the metrics (no user names or images in them); use 127.0.0.1:PORT unless a scraper must reach this node's address", c.MetricsListen))
	}
	return warnings, errors.Join(errs...)
}

// checkRuntime finds the runtime the daemon would run: the one named, or
// with auto one of oci.DefaultRuntimes. Whether it starts containers is
// the daemon's probe at start.
func checkRuntime(rt string) error {
	if rt != "auto" {
		if _, err := exec.LookPath(rt); err != nil {
			return fmt.Errorf("runtime %q: not found or not executable; install it, or set runtime = auto", rt)
		}
		return nil
	}
	for _, name := range oci.DefaultRuntimes {
		if _, err := exec.LookPath(name); err == nil {
			return nil
		}
	}
	return fmt.Errorf("runtime auto: none of %s in PATH; install crun (or runc), or set runtime to its path", strings.Join(oci.DefaultRuntimes, ", "))
}

// checkCacheDir: the cache's directory (or what it will be created in) is
// a directory on a file system with room for an image.
func checkCacheDir(dir string) error {
	existing, err := nearestDir("cache_dir", dir)
	if err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := statfs(existing, &st); err != nil {
		return fmt.Errorf("cache_dir %s: %v; set cache_dir to a node-local directory", dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < MinCacheFree {
		return fmt.Errorf("cache_dir %s: its file system has %s free (at least %s needed); free space there, or set cache_dir to another file system", dir, human(free), human(MinCacheFree))
	}
	return nil
}

// checkWritable: writable containers' directory (or what it will be made
// in) is a directory, mke2fs is there to make their file systems, and a
// user may have at least one. A directory on a tmpfs, or with less room
// than one container, works but is what writable_dir exists to avoid.
func checkWritable(c Config) (warnings []string, err error) {
	if c.WritableMaxPerUser > 0 && c.WritableMaxPerUser < c.WritableSize {
		return nil, fmt.Errorf("writable_max_per_user %s is less than writable_size %s: no user could have a writable container; raise it, or lower writable_size", human(c.WritableMaxPerUser), human(c.WritableSize))
	}
	if _, err := exec.LookPath(loopfs.Mkfs); err != nil {
		return nil, fmt.Errorf("writable_dir: %s not found in PATH, and it makes each writable container's file system; install e2fsprogs", loopfs.Mkfs)
	}
	existing, err := nearestDir("writable_dir", c.WritableDir)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := statfs(existing, &st); err != nil {
		return nil, fmt.Errorf("writable_dir %s: %v; set writable_dir to a node-local directory", c.WritableDir, err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		warnings = append(warnings, fmt.Sprintf("writable_dir %s: on a tmpfs: containers' writes take the node's memory; set writable_dir to a directory on node-local disk", c.WritableDir))
	}
	if free := int64(st.Bavail) * st.Bsize; free < c.WritableSize { //nolint:gosec // block counts fit
		warnings = append(warnings, fmt.Sprintf("writable_dir %s: its file system has %s free, less than one writable container's writable_size %s: writable containers are refused until there is room", c.WritableDir, human(free), human(c.WritableSize)))
	}
	return warnings, nil
}

// statfs is unix.Statfs; tests fill a disk without one.
var statfs = unix.Statfs

// checkDir: dir is a directory, or can be made in an existing one.
// checkStateDir: state_dir, and each directory above it, must be searchable
// by others: the container runtime sets a bundle up inside the container's
// user namespace, which maps only the job's user (the bundles themselves
// are 0700 with an ACL for that user); a 0700 parent fails every container
// with the runtime's "make ROOTFS private: Permission denied".
func checkStateDir(dir string) error {
	p, err := nearestDir("state_dir", dir)
	if err != nil {
		return err
	}
	for ; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("state_dir %s: %v; set state_dir to a node-local directory", dir, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("state_dir %s: %s is not searchable by others (mode %04o), and containers' runtimes work there as the job's user; chmod o+x %s, or set state_dir elsewhere", dir, p, fi.Mode().Perm(), p)
		}
		if p == "/" {
			return nil
		}
	}
}

// nearestDir returns dir, or its nearest ancestor that exists: it must be
// a directory (a file there stops the daemon making it).
func nearestDir(key, dir string) (string, error) {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if (errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)) && p != "/" {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("%s %s: %v; set %s to a node-local directory", key, dir, err, key)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("%s %s: %s is not a directory; remove it, or set %s elsewhere", key, dir, p, key)
		}
		return p, nil
	}
}

func checkFile(key, path, fix string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s: missing; %s", key, path, fix)
	case err != nil:
		return fmt.Errorf("%s %s: %v; %s", key, path, err, fix)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s %s: not a regular file; %s", key, path, fix)
	}
	return nil
}

// checkPolicy: policy is a file containers/image reads as a policy, as
// every pull does (a policy that does not parse fails them all).
func checkPolicy(path string) error {
	const fix = "install containers-common's policy.json there, or set policy to a containers-policy.json(5) file"
	if err := checkFile("policy", path, fix); err != nil {
		return err
	}
	if _, err := signature.NewPolicyFromFile(path); err != nil {
		return fmt.Errorf("policy %s: %v; fix it (containers-policy.json(5)), or set policy to another file", path, err)
	}
	return nil
}

// checkSharedStore: the site image store is what the daemon trusts as its
// own cache (squash's openShared): a directory, not a symlink, owned by the
// daemon's user (root) and writable by it only. Whoever else could write
// it would choose what every node's containers run. The daemon skips a
// store it cannot use (each node pulls for itself), so one that is not
// there (its file system not mounted yet) is a warning; one that others
// could write is an error, to be fixed before the daemon starts.
func checkSharedStore(dir string) (warning string, err error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("shared_store %s: missing (its file system not mounted?): each node pulls for itself until it is there; create it (root's, mode 0700) or remove the key", dir), nil
	}
	if err != nil {
		return "", fmt.Errorf("shared_store %s: %v; fix it, or remove the key", dir, err)
	}
	owner := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = int(st.Uid)
	}
	uid := os.Geteuid()
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", fmt.Errorf("shared_store %s: a symlink; set shared_store to the directory it names", dir)
	case !fi.IsDir():
		return "", fmt.Errorf("shared_store %s: not a directory; set shared_store to a directory (root's, mode 0700)", dir)
	case owner != uid:
		return "", fmt.Errorf("shared_store %s: owned by uid %d, not %d (the daemon's): its owner would choose what every node runs; chown %d %s", dir, owner, uid, uid, dir)
	case fi.Mode().Perm()&0o022 != 0:
		return "", fmt.Errorf("shared_store %s: writable by others (mode %04o): anyone could put an image there that every node runs; chmod go-w %s (0700)", dir, fi.Mode().Perm(), dir)
	}
	return "", nil
}

// checkListen accepts HOST:PORT with an IP address (or localhost, or none:
// every address) and a port from 1 to 65535.
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want HOST:PORT such as 127.0.0.1:9464")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535 (such as 127.0.0.1:9464)", port)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return fmt.Errorf("host %q: want an IP address or localhost (such as 127.0.0.1:9464)", host)
	}
	return nil
}

// loopback reports whether addr (checked by checkListen) listens on a
// loopback address only.
func loopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// human writes n bytes as the config's sizes are written (500M, 2G).
func human(n int64) string {
	for _, u := range []struct {
		s string
		b int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.b {
			return strconv.FormatInt(n/u.b, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}
