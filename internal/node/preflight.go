package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/pkg/asuser"
	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
	"github.com/podman-hpc/podman-hpc/pkg/loopfs"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// preflightID is whose container the checks start (uid and gid): nobody,
// an id every node has and no one runs jobs as.
const preflightID = 65534

// Check is one feature of the node that the daemon needs, tried as the
// daemon uses it, on the configured directories.
type Check struct {
	// ID names the check in the metrics (podman_hpc_node_check_ok's
	// check label): stable, lower case.
	ID string
	// What is what was tried, for people ("POSIX ACLs on state_dir ...").
	What string
	// Detail says what passed, when there is more to say (the runtime).
	Detail string
	// Err is why it failed; nil when it works or was not tried.
	Err error
	// Fix is what to do about Err.
	Fix string
	// Skipped says why the check was not tried ("": it was): a check it
	// needs failed first.
	Skipped string
	// Optional: a failure only some jobs meet (those that ask for a
	// private network); the node stays ready.
	Optional bool
	// Took is how long it took.
	Took time.Duration
}

// OK reports whether the check was tried and passed.
func (c Check) OK() bool { return c.Err == nil && c.Skipped == "" }

// Report is what Preflight found, check by check, in the order they ran.
type Report struct {
	Checks []Check
	rt     *oci.Runtime // the runtime that started the container; nil if none did
}

// Ready reports whether the node can run containers: every check but the
// optional ones passed.
func (r *Report) Ready() bool {
	for _, c := range r.Checks {
		if !c.Optional && !c.OK() {
			return false
		}
	}
	return true
}

// Err is nil when the node is Ready; otherwise one line naming each check
// that failed (those skipped because of it are its consequences) and its
// fix.
func (r *Report) Err() error {
	if r.Ready() {
		return nil
	}
	var why []string
	for _, c := range r.Checks {
		if !c.Optional && c.Err != nil {
			why = append(why, fmt.Sprintf("%s: %v; fix: %s", c.What, c.Err, c.Fix))
		}
	}
	return fmt.Errorf("this node cannot run containers: %s", strings.Join(why, "; "))
}

// Preflight tries every kernel, file system and tool feature a container
// needs, as the daemon uses it, on cfg's directories: a user namespace; a
// bundle in state_dir, with its POSIX ACL and a trusted.* xattr; a squashfs
// made by mksquashfs with cfg's compression in cache_dir, mounted from a
// loop device, idmapped and under an overlay whose upper layer is in
// state_dir; a helper process as a user; and the OCI runtime starting a
// container on that root, in a user namespace, as nobody. What it makes is
// in scratch directories (state_dir/containers, cache_dir/tmp) that it
// removes. It must run as root; the daemon runs it at its start (Open).
func Preflight(ctx context.Context, cfg config.Config, log *slog.Logger) *Report {
	p := &preflight{cfg: cfg, log: log, r: &Report{}}
	p.run(ctx)
	return p.r
}

type preflight struct {
	cfg config.Config
	log *slog.Logger
	r   *Report
}

// check runs fn as the check id, unless a check of needs did not pass.
// It returns whether it passed.
func (p *preflight) check(c Check, needs []string, fn func() error) bool {
	for _, n := range needs {
		for _, d := range p.r.Checks {
			if d.ID == n && !d.OK() {
				c.Skipped = "needs " + d.What
			}
		}
		if c.Skipped != "" {
			break
		}
	}
	if c.Skipped == "" {
		start := time.Now()
		c.Err = fn()
		c.Took = time.Since(start)
	}
	p.r.Checks = append(p.r.Checks, c)
	return c.OK()
}

// passed reports whether the checks ids all passed.
func (p *preflight) passed(ids ...string) bool {
	for _, id := range ids {
		for _, c := range p.r.Checks {
			if c.ID == id && !c.OK() {
				return false
			}
		}
	}
	return true
}

func (p *preflight) run(ctx context.Context) {
	cfg := p.cfg
	comp := cfg.Compression
	if comp == "" {
		comp = squashfs.DefaultCompression
	}
	compName, _, _ := strings.Cut(comp, ":")

	p.check(Check{ID: "userns", What: "user namespaces",
		Fix: "let root create user namespaces: sysctl user.max_user_namespaces above 0, and no LSM policy (AppArmor, SELinux) refusing it"},
		nil, func() error {
			_, release, err := sharedUserNS(preflightID, preflightID)
			if err == nil {
				release()
			}
			return err
		})

	// A bundle as a container's: state_dir/containers/HEX, with its ACL.
	c := &container{req: &wire.ContainerRequest{UID: preflightID, GID: preflightID}}
	p.check(Check{ID: "state_dir", What: "a container's directory in state_dir " + cfg.StateDir,
		Fix: "make state_dir a writable node-local directory (a tmpfs such as /run, or a local disk)"},
		nil, func() error {
			var err error
			if c.bundle, err = newBundleName(filepath.Join(cfg.StateDir, "containers")); err != nil {
				return err
			}
			c.id = "preflight-" + filepath.Base(c.bundle)[:12]
			return createBundle(c)
		})
	if c.bundle != "" {
		defer removeScratchBundle(c.bundle, p.log)
	}
	p.check(Check{ID: "state_dir_acl", What: "POSIX ACLs on state_dir " + cfg.StateDir,
		Fix: "put state_dir on a file system with POSIX ACLs (tmpfs, ext4 and xfs have them; mount with acl where it is an option), e.g. the default /run/podman-hpc/state"},
		[]string{"state_dir"}, func() error { return oci.AllowTraverse(c.bundle, c.req.UID) })
	p.check(Check{ID: "state_dir_xattr", What: "trusted.* extended attributes on state_dir " + cfg.StateDir + " (overlay's upper layer)",
		Fix: "put state_dir on a file system with trusted.* xattrs (tmpfs, ext4 and xfs have them; NFS and ramfs do not)"},
		[]string{"state_dir"}, func() error {
			d := filepath.Join(c.bundle, "xattr")
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
			if err := unix.Lsetxattr(d, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				return fmt.Errorf("setxattr trusted.overlay.opaque: %w", err)
			}
			return nil
		})

	// A writable container's file system, as writableLayer makes it.
	p.check(Check{ID: "writable_dir", What: "a writable container's file system in writable_dir " + cfg.WritableDir,
		Fix: "make writable_dir a node-local directory of root's with room for writable_size, install e2fsprogs (mke2fs), and load the loop and ext4 modules"},
		nil, func() error { return preflightLayer(ctx, cfg) })

	// A squashfs as an image's: made in cache_dir's tmp, mounted from there.
	tmp := filepath.Join(cfg.CacheDir, "tmp")
	var scratch string
	p.check(Check{ID: "cache_dir", What: "a pull's directory in cache_dir " + cfg.CacheDir,
		Fix: "make cache_dir a writable node-local directory with room for the largest image, unpacked and squashed"},
		nil, func() error {
			if err := os.MkdirAll(tmp, 0o700); err != nil {
				return err
			}
			var err error
			scratch, err = os.MkdirTemp(tmp, "preflight-")
			return err
		})
	if scratch != "" {
		defer os.RemoveAll(scratch)
	}
	sqfs := filepath.Join(scratch, "image.squashfs")
	p.check(Check{ID: "mksquashfs", What: "mksquashfs with compression " + comp,
		Fix: "install squashfs-tools 4.5 or later with " + compName + " (mksquashfs -help lists its compressors), or set compression to one it has"},
		[]string{"cache_dir", "userns"}, func() error { return preflightSquashfs(ctx, scratch, sqfs, comp) })
	mounts := newImageMounts(0, nil, p.log)
	var imageRoot string
	const digest = "preflight"
	p.check(Check{ID: "squashfs_mount", What: "a squashfs (" + compName + ") in cache_dir mounted from a loop device",
		Fix: "load the loop and squashfs modules (modprobe loop squashfs) in a kernel with squashfs " + compName + " support, or set compression to one it has (gzip, zstd, lz4, xz, lzo)"},
		[]string{"mksquashfs"}, func() error {
			var err error
			if imageRoot, err = mounts.acquire(&image{Digest: digest, Path: sqfs}); err != nil {
				return err
			}
			if _, err := os.Stat(filepath.Join(imageRoot, preflightFile)); err != nil {
				return fmt.Errorf("the mounted squashfs lacks its file: %w", err)
			}
			return nil
		})
	if imageRoot != "" {
		defer mounts.release(digest)
	}
	// The root as a container's, once before the runtime is set up (which
	// may bind state_dir on itself, hiding what is mounted below it), and
	// again in each runtime's probe.
	rootNeeds := []string{"userns", "state_dir_acl", "squashfs_mount"}
	var root *preflightRoot
	p.check(Check{ID: "idmapped_mount", What: "an idmapped mount of the squashfs",
		Fix: "run a kernel whose squashfs takes idmapped mounts (mount_setattr MOUNT_ATTR_IDMAP)"},
		rootNeeds, func() error {
			var err error
			root, err = newPreflightRoot(cfg.StateDir, imageRoot)
			return err
		})
	p.check(Check{ID: "overlay", What: "an overlay on the idmapped squashfs, its upper layer in state_dir " + cfg.StateDir,
		Fix: "load the overlay module (modprobe overlay), and put state_dir on a file system an overlay's upper layer may be on (tmpfs, ext4, xfs)"},
		[]string{"idmapped_mount"}, func() error { return root.mountOverlay() })
	root.remove(p.log)

	p.check(Check{ID: "user_helper", What: "a helper process as a user (" + asuser.HelperName + ")",
		Fix: "install " + asuser.HelperName + " next to podman-hpcd, on a file system that allows exec"},
		nil, func() error {
			files, err := asuser.OpenFiles(asuser.Credential{UID: preflightID, GID: preflightID},
				[]asuser.Want{{Path: "/", Flags: unix.O_RDONLY | unix.O_DIRECTORY}})
			closeAll(files)
			return err
		})
	p.check(Check{ID: "network_tools", What: "nsenter and ip (--container-unshare=net)", Optional: true,
		Fix: "install util-linux (nsenter) and iproute2 (ip): the jobs that ask for a private network need them"},
		nil, func() error {
			for _, t := range []string{"nsenter", "ip"} {
				if _, err := exec.LookPath(t); err != nil {
					return err
				}
			}
			return nil
		})

	// Last: the runtime, on the same kind of root a job gets.
	rtCheck := Check{ID: "runtime", What: "the OCI runtime (runtime = " + cfg.Runtime + ") starting a container on an image's root",
		Fix: "install crun or runc that starts such containers here, or set runtime to one that does; its error above says what it refused"}
	pr := imageProbe(cfg.StateDir, imageRoot, p.log)
	if !p.passed("overlay") {
		// The admin still learns whether the runtime itself works.
		rtCheck.What = "the OCI runtime (runtime = " + cfg.Runtime + ") starting a container on an empty root (the image's root failed)"
		pr = probe(cfg.StateDir)
	}
	p.check(rtCheck, []string{"state_dir"}, func() error {
		rt, err := pickRuntime(ctx, cfg, pr)
		if err != nil {
			return err
		}
		p.r.rt = rt
		return nil
	})
	if rt := p.r.rt; rt != nil {
		p.r.Checks[len(p.r.Checks)-1].Detail = rt.Command
		if len(rt.Args) > 0 {
			p.r.Checks[len(p.r.Checks)-1].Detail += " " + strings.Join(rt.Args, " ")
		}
	}
}

// preflightLayer makes, mounts and removes a writable container's file
// system of the smallest size in writable_dir.
func preflightLayer(ctx context.Context, cfg config.Config) error {
	w := newWriteSpace(cfg)
	if err := w.open(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(w.dir, "preflight-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "layer.ext4")
	if err := loopfs.Make(ctx, file, loopfs.MinSize); err != nil {
		return err
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return err
	}
	if err := loopfs.Mount(file, mnt); err != nil {
		return err
	}
	defer oci.Unmount(mnt, true)
	if err := unix.Lsetxattr(mnt, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return fmt.Errorf("setxattr trusted.overlay.opaque: %w", err)
	}
	return oci.Unmount(mnt, false)
}

// preflightFile is the file of preflight's squashfs.
const preflightFile = "etc/podman-hpc-preflight"

// preflightSquashfs writes a small tree's squashfs at out with compression
// comp, as an export does (squashfs.SquashTree), in scratch.
func preflightSquashfs(ctx context.Context, scratch, out, comp string) error {
	tree := filepath.Join(scratch, "tree")
	if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(preflightFile)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, preflightFile), []byte("podman-hpcd preflight\n"), 0o644); err != nil {
		return err
	}
	if err := createFile(out, nil); err != nil {
		return err
	}
	return squashfs.SquashTree(ctx, tree, out, squashfs.TreeOptions{
		Compression: comp, Scratch: scratch,
		Owner: squashfs.Owner{UID: preflightID, GID: preflightID},
	})
}

// preflightRoot is a container's bundle and root filesystem, made as
// create makes them (makeBundle, userRoot, the overlay) over an image
// mounted at imageRoot.
type preflightRoot struct {
	c *container
}

// newPreflightRoot makes the bundle in stateDir and the idmapped layer of
// imageRoot in it (the overlay: mountOverlay). The caller calls remove,
// also after a failure.
func newPreflightRoot(stateDir, imageRoot string) (*preflightRoot, error) {
	bundle, err := newBundleName(filepath.Join(stateDir, "containers"))
	if err != nil {
		return nil, err
	}
	c := &container{id: "preflight-" + filepath.Base(bundle)[:12], bundle: bundle,
		req: &wire.ContainerRequest{UID: preflightID, GID: preflightID}, img: &image{Digest: "preflight"}}
	r := &preflightRoot{c: c}
	if err := makeBundle(c); err != nil {
		return r, err
	}
	_, err = userRoot(c, imageRoot, c.private(""), nil)
	return r, err
}

func (r *preflightRoot) mountOverlay() error {
	c := r.c
	c.rootfs = c.private("root")
	if err := oci.MountOverlay(c.private("lower"), c.private("upper"), c.private("work"), c.rootfs); err != nil {
		return err
	}
	return nil
}

// remove unmounts and removes what newPreflightRoot made. Safe on nil.
func (r *preflightRoot) remove(log *slog.Logger) {
	if r != nil {
		removeScratchBundle(r.c.bundle, log)
	}
}

// removeScratchBundle unmounts what is mounted in bundle and removes it.
func removeScratchBundle(bundle string, log *slog.Logger) {
	mounts, err := oci.MountsUnder(bundle)
	if err != nil {
		log.Warn("preflight: list mounts", "err", err)
	}
	for _, mp := range mounts {
		if err := oci.Unmount(mp, false); err != nil {
			oci.Unmount(mp, true)
		}
	}
	if err := os.RemoveAll(bundle); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("preflight: remove its bundle", "bundle", bundle, "err", err)
	}
}

// imageProbe starts, with the runtime, the kind of container a job gets:
// on an overlay over the idmapped image mounted at imageRoot, in a user
// namespace that maps nobody alone, as nobody, under the tasks' seccomp
// filter, running the daemon's init; then removes it.
func imageProbe(stateDir, imageRoot string, log *slog.Logger) oci.Probe {
	return func(ctx context.Context, rt *oci.Runtime) error {
		root, err := newPreflightRoot(stateDir, imageRoot)
		defer root.remove(log)
		if err != nil {
			return err
		}
		if err := root.mountOverlay(); err != nil {
			return err
		}
		c := root.c
		if err := publishRoot(rt, c, true); err != nil {
			return err
		}
		defer unpublishRoot(rt, c)
		init, err := initBinary()
		if err != nil {
			return err
		}
		spec, err := oci.NewSpec(
			oci.WithRootfs(c.publicRoot(), true),
			oci.WithProcess([]string{initPath, "init"}, nil, "/"),
			oci.WithSeccomp(false),
			oci.WithMounts(oci.BindMount(init, initPath, "ro", "nosuid", "nodev")),
			oci.WithUserNamespace(c.req.UID, c.req.GID),
		)
		if err != nil {
			return err
		}
		if err := makeMountpoints(c.rootfs, spec.Mounts); err != nil {
			return err
		}
		if err := writeSpec(filepath.Join(c.bundle, "config.json"), spec); err != nil {
			return err
		}
		defer rt.Delete(context.WithoutCancel(ctx), c.id, oci.DeleteOpts{Force: true})
		if err := rt.Run(ctx, c.id, oci.RunOpts{Bundle: c.bundle}); err != nil {
			return err
		}
		st, err := rt.State(ctx, c.id)
		if err != nil {
			return err
		}
		if st.Status != "running" {
			return fmt.Errorf("probe container is %s, not running", st.Status)
		}
		return nil
	}
}
