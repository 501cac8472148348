package node

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// The container's mounts: the user's binds, the home, the site's and the
// modules', and the account files; the job user as the node knows them.

// mounts returns the container's mounts beyond the defaults and the init,
// and the files held open for them (the caller closes them once the runtime
// has mounted). fromModules are the modules' binds of paths the job
// influences (hooks.Result.UserMounts): opened as the user too.
func (m *manager) mounts(c *container, acct account, cred credential, fromModules []specs.Mount) ([]specs.Mount, []*os.File, error) {
	var out []specs.Mount
	drop := umounted(c.req.Mounts) // --container-mounts=umount:/DST
	for _, s := range m.site {
		if !drop[s.Dst] {
			out = append(out, oci.BindMount(s.Src, s.Dst, append([]string{"nosuid", "nodev"}, s.Options...)...))
		}
	}
	if c.req.Step == wire.BatchStep {
		for _, s := range m.batch {
			if drop[s.Dst] {
				continue
			}
			if _, err := os.Stat(s.Src); err != nil {
				m.log.Warn("batch_mounts: skipped", "src", s.Src, "err", err)
				continue
			}
			out = append(out, oci.BindMount(s.Src, s.Dst, append([]string{"ro", "nosuid", "nodev"}, s.Options...)...))
		}
	}
	etc, err := m.writeAccountFiles(c, acct)
	if err != nil {
		return nil, nil, err
	}
	out = append(out, etc...)
	apt, err := aptFakeRoot(c, m.mounted.root(c.img.Digest))
	if err != nil {
		return nil, nil, err
	}
	out = append(out, apt...)

	// The user's own mounts (and home), opened as the user: the source is
	// the opened file, so what was checked is what gets mounted.
	var user []stagedMount
	if home, ok, err := homeMount(c.req, acct); err != nil {
		return nil, nil, err
	} else if ok {
		user = append(user, home)
	}
	home := len(user) == 1
	if home && drop[path.Clean(user[0].dst)] {
		user, home = nil, false
	}
	for _, um := range c.req.Mounts {
		if !um.IsTmpfs() && !um.IsUmount() {
			user = append(user, stagedMount{src: um.Src, dst: um.Dst, opts: um.Options})
		}
	}
	if c.req.Script != "" {
		user = append(user, stagedMount{src: c.req.Script, dst: c.req.Script, opts: []string{"ro"}})
	}
	for _, mt := range fromModules {
		user = append(user, stagedMount{src: mt.Source, dst: mt.Destination, opts: mt.Options, module: true})
	}
	staged, held, err := m.stageAsUser(c, acct, cred, user)
	if err != nil {
		return nil, held, err
	}
	return append(out, inUserOrder(staged, home, c.req.Mounts, c.req.UID, c.req.GID, c.req.RemapRoot)...), held, nil
}

// makeMountpoints creates, inside root, every mount's destination that the
// image lacks; those under /dev and /proc are the runtime's (on its tmpfs and
// procfs).
func makeMountpoints(root string, mounts []specs.Mount) error {
	for _, mt := range mounts {
		d := mt.Destination
		if strings.HasPrefix(d, "/dev/") || strings.HasPrefix(d, "/proc/") || strings.HasPrefix(d, "/sys/") {
			continue
		}
		file := false
		if mt.Type == "bind" {
			dir, err := isDirNoSync(mt.Source)
			if err != nil {
				return fmt.Errorf("mount %s: %w", mt.Source, err)
			}
			file = !dir
		}
		if err := oci.MakeMountpoint(root, d, file); err != nil {
			return err
		}
	}
	return nil
}

// writeAccountFiles writes passwd and group with the job user in them, from
// the image's own files read inside the image's root (never following a
// symlink out of it), and returns their bind mounts.
func (m *manager) writeAccountFiles(c *container, acct account) ([]specs.Mount, error) {
	root := m.mounted.root(c.img.Digest)
	passwd, _ := readInRoot(root, "etc/passwd")
	group, _ := readInRoot(root, "etc/group")
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	hostGroup, _ := os.ReadFile("/etc/group")
	var mounts []specs.Mount
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"group", mergeGroup(bytes.NewReader(group), bytes.NewReader(hostGroup), acct)},
		{"passwd", mergePasswd(bytes.NewReader(passwd), bytes.NewReader(hostPasswd), acct)},
	} {
		p := c.private(f.name)
		// In state_dir, whatever the image's file: the user's share.
		pages := (int64(len(f.data)) + 4095) &^ 4095
		charged, err := m.copyups.take(c.req.UID, pages, "the image's /etc/"+f.name+" ("+strconv.Itoa(len(f.data)>>10)+" KiB with your account), written for each container,",
			"use an image with a smaller /etc/"+f.name)
		if err != nil {
			return nil, err
		}
		c.copied += charged
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
		// The container's user namespace sees the host's root as nobody:
		// these are the user's, as the image's files are (userRoot).
		if err := os.Chown(p, int(c.req.UID), int(c.req.GID)); err != nil {
			return nil, err
		}
		mounts = append(mounts, oci.BindMount(p, "/etc/"+f.name, "ro", "nosuid", "nodev", "noexec"))
	}
	return mounts, nil
}

// readInRoot reads root/rel with every path component resolved inside root.
func readInRoot(root, rel string) ([]byte, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	// An account file is small; an image's huge one is cut, not a failure.
	return io.ReadAll(io.LimitReader(f, 16<<20))
}

// credentialOf is lookupAccount's credential, or, for a user the daemon's
// /etc/passwd lacks (and no account sent), their uid and gid alone.
func credentialOf(req *wire.ContainerRequest) credential {
	if _, cred, err := lookupAccount(req); err == nil {
		return cred
	}
	return credential{UID: req.UID, GID: req.GID}
}

// lookupAccount is the job user: as the plugin resolved them in slurmstepd
// through the node's own NSS (LDAP and SSSD users included) with the job's
// groups from Slurm, or, from a plugin that does not send the account, as
// /etc/passwd and /etc/group know them (the daemon is static Go: no NSS).
func lookupAccount(req *wire.ContainerRequest) (account, credential, error) {
	if a := req.Account; a != nil {
		acct := account{Name: a.Name, Home: a.Home, Shell: firstNonEmpty(a.Shell, "/bin/sh"), UID: req.UID, GID: req.GID,
			GroupName: firstNonEmpty(a.Groups[0].Name, a.Name), Groups: map[uint32]string{}}
		cred := credential{UID: req.UID, GID: req.GID}
		for _, g := range a.Groups[1:] {
			if g.GID == req.GID {
				continue
			}
			cred.Groups = append(cred.Groups, g.GID)
			if g.Name != "" {
				acct.Groups[g.GID] = g.Name
			}
		}
		return acct, cred, nil
	}
	uid, gid := req.UID, req.GID
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return account{}, credential{}, fmt.Errorf("look up uid %d: %w: the daemon reads /etc/passwd only; a plugin of the daemon's version sends the user from the node's NSS (LDAP, SSSD): ask your admin", uid, err)
	}
	a := account{Name: u.Username, Home: u.HomeDir, Shell: "/bin/sh", UID: uid, GID: gid, Groups: map[uint32]string{}}
	a.GroupName = a.Name
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		a.GroupName = g.Name
	}
	cred := credential{UID: uid, GID: gid}
	gids, _ := u.GroupIds()
	for _, s := range gids {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || uint32(n) == gid {
			continue
		}
		cred.Groups = append(cred.Groups, uint32(n))
		if g, err := user.LookupGroupId(s); err == nil {
			a.Groups[uint32(n)] = g.Name
		}
	}
	return a, cred, nil
}
