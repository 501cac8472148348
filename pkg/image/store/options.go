package store

import (
	"fmt"
	"log/slog"
	"os/user"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// DefaultPolicyPath is containers-policy.json(5)'s system location.
const DefaultPolicyPath = "/etc/containers/policy.json"

// Options configure a Cache. Zero values mean the documented defaults.
type Options struct {
	// Dir is the cache root on node-local disk, e.g.
	// /var/lib/podman-hpc/images; created 0700, owned by the daemon.
	Dir string
	// TmpDir is where pulls unpack layers ("": Dir/tmp); it needs room
	// for the largest image unpacked. A tmpfs avoids writing unpacked
	// images to disk, at the cost of RAM. It must be a directory only
	// root can write (it is created 0700 if missing), and Open deletes
	// everything in it.
	TmpDir string
	// MaxBytes: evict least-recently-used unpinned images while the
	// squashfs files total more (0: half the size of Dir's file system;
	// negative: no limit).
	MaxBytes int64
	// MaxImageSize bounds what one image may write to disk: its layers'
	// declared sizes, then the bytes of its layers as they are applied,
	// or the size of a squashfs file or archive a user names. A pull that
	// would pass it fails with image.ErrTooLarge before filling the disk. 0:
	// half the size of TmpDir's file system, at most DefaultMaxImageSize;
	// negative: no limit.
	MaxImageSize int64
	// MaxPullsPerUser bounds the pulls (downloads, and copies of a
	// user's files) one user has running at once; one more waits, with a
	// "note" in its progress, until one of them ends or its context does.
	// Steps asking for the same image share one pull. Root's pulls are
	// not counted. 0: DefaultMaxPullsPerUser; negative: no limit.
	MaxPullsPerUser int
	// MaxPulls bounds the pulls all users have running at once, as
	// MaxPullsPerUser does one user's: each pull's memory in the daemon
	// is bounded (the paths it tracks), and this bounds the sum. 0:
	// DefaultMaxPulls; negative: no limit.
	MaxPulls int
	// MaxAge: evict unpinned images unused for longer (0: no limit).
	MaxAge time.Duration
	// Compression is the mksquashfs compressor, "NAME" or "NAME:LEVEL"
	// (gzip, zstd, lzo, xz, lz4: those the kernel mounts). Default
	// squashfs.DefaultCompression.
	Compression string
	// Processors is mksquashfs -processors (default runtime.NumCPU()).
	Processors int
	// RegistriesConf is the containers-registries.conf(5) file ("": the
	// system's); RegistriesConfDir its drop-in directory ("": the
	// system's registries.conf.d).
	RegistriesConf    string
	RegistriesConfDir string
	// PolicyPath is the containers-policy.json(5) file ("":
	// DefaultPolicyPath). There is no built-in fallback: a missing file
	// makes Open fail with an error naming it.
	PolicyPath string
	// RegistryTimeout bounds each attempt at a registry request that is
	// not a blob download (default 20s), and how long a blob download
	// may go without receiving data. RegistryAttempts is how many
	// attempts a failing request gets (default 3).
	RegistryTimeout  time.Duration
	RegistryAttempts int
	// TagTTL: for this long after a registry confirmed that a tag is a
	// digest for a user, that user's next Get of the tag is served from
	// the cache without asking the registry (0: always ask). A digest
	// reference a user was confirmed for never needs the registry.
	TagTTL time.Duration
	// ParallelDownloads bounds concurrent layer downloads (default 6).
	ParallelDownloads int
	// Mksquashfs and Unsquashfs are the binaries ("": from PATH).
	Mksquashfs, Unsquashfs string
	// Tar2sqfs is squashfs-tools-ng's tar2sqfs ("": from PATH): with it
	// a pull squashes its layers as they stream in, without extracting
	// them (pull_stream.go); without it each
	// image is extracted to disk, then squashed with Mksquashfs.
	Tar2sqfs string
	// HelperTimeout bounds the whole export of a user's local store
	// (podman save for podman://, the Docker daemon's export for
	// dockerd://): past it the export is stopped, podman with every
	// process it started (a mount_program the user's storage.conf
	// names, say), and the Get fails with image.ErrHelperTimeout. Default
	// DefaultHelperTimeout.
	HelperTimeout time.Duration
	// Podman is the binary podman:// runs as the user ("": from PATH);
	// DockerSocket the Docker daemon's socket dockerd:// connects to as
	// the user ("": source.DefaultDockerSocket).
	Podman, DockerSocket string
	// SharedStore is the site image store ("": none), a directory on a
	// file system every node mounts, owned by root and writable by it
	// only: the first node that needs an image builds it there, the
	// others copy it from there instead of pulling (shared.go). One that
	// cannot be used is warned about, and the cache works without it.
	SharedStore string
	// SharedStoreMaxPerUser bounds the bytes of the images one user's
	// pulls stored in the site image store: before one more is stored,
	// that user's least recently used ones go (shared_bound.go). 0:
	// DefaultSharedStoreMaxPerUser; negative: no bound.
	SharedStoreMaxPerUser int64
	// Log receives one line per event (default: discard).
	Log *slog.Logger
	// Evicted, if set, is told how many images the limits (MaxBytes,
	// MaxAge) or a Prune removed, under the cache's lock: it must not
	// call the Cache.
	Evicted func(n int)

	retryDelay time.Duration // source.Options.RetryDelay (tests)
}

// PullOptions say who asks for an image.
type PullOptions struct {
	// UID and GID are the requesting user's; Groups their supplementary
	// groups (nil: looked up in /etc/group). Paths in the reference are
	// read with these credentials, never as root.
	UID, GID uint32
	Groups   []uint32
	// AuthJSON is the user's auth.json (containers-auth.json(5)), read
	// by the caller as the user. nil means anonymous: the daemon never
	// falls back to its own credentials. Only its "auths" entries are
	// used: credential helpers (credHelpers, credsStore) are not run, and
	// the user is told so in a "note". Get, and the pull it starts, keep
	// no reference to it, nor to the credentials read from it, once the
	// pull is done; the caller should drop its own copy after Get.
	AuthJSON []byte
	// Cwd is the user's working directory, for relative paths.
	Cwd string
	// Home is the user's home directory: podman:// runs the user's
	// podman with it as HOME, which finds their storage there. User is
	// their name ("": unknown), for their /etc/subuid ranges.
	Home, User string
	// Progress, if set, is called from other goroutines during Get with
	// phases "resolving", "downloading" (per layer: Layer, Done, Total
	// bytes), "squashing" and "done", and "note" for what the user must
	// know at once (Message: credential helpers not run, waiting for
	// one of their other pulls).
	Progress func(Progress)
	// Refresh asks the registry what a tag is now, even within TagTTL
	// (an explicit pull).
	Refresh bool
}

// credential is who the user's paths are read as: their groups as given,
// or looked up.
func (o PullOptions) credential() source.Credential {
	c := source.Credential{UID: o.UID, GID: o.GID, Groups: o.Groups}
	if c.Groups == nil && o.UID != 0 {
		// Best effort: /etc/group only without cgo. Slurm knows the job's
		// groups; the daemon should pass them in PullOptions.Groups.
		if u, err := user.LookupId(strconv.FormatUint(uint64(o.UID), 10)); err == nil {
			if ids, err := u.GroupIds(); err == nil {
				for _, s := range ids {
					if g, err := strconv.ParseUint(s, 10, 32); err == nil {
						c.Groups = append(c.Groups, uint32(g))
					}
				}
			}
		}
	}
	return c
}

// Progress is one progress report (package image's: the sources report
// too).
type Progress = image.Progress

// ImageConfig is the part of the image's configuration a container needs.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
	// Apptainer: the image is a SIF file's root: a container sources its
	// /.singularity.d/env/*.sh before the tasks start; its Entrypoint is
	// /.singularity.d/runscript.
	Apptainer bool `json:"apptainer,omitempty"`
}

// Image is a cached image as one user may see it.
type Image struct {
	// Digest names the content, and is the image's key in the cache: the
	// image manifest's digest for pulled images ("sha256:HEX"), the file's
	// sha256 for squashfs files, in a space of its own
	// ("squashfs:sha256:HEX": the two never match), and a SIF file's root
	// partition's sha256 in another ("sif:sha256:HEX").
	Digest string
	// Path is the squashfs file, root-owned in the cache; mount it
	// read-only, nosuid, nodev. It is never rewritten, only removed.
	Path     string
	Size     int64
	Config   ImageConfig
	Refs     []string // names it was pulled by (a user sees their own)
	Created  time.Time
	LastUsed time.Time
	Users    []uint32 // confirmed users (a user sees only themself)
}

func cloneConfig(c ImageConfig) ImageConfig {
	c.Env, c.Entrypoint, c.Cmd = slices.Clone(c.Env), slices.Clone(c.Entrypoint), slices.Clone(c.Cmd)
	return c
}

const (
	// DefaultMaxPullsPerUser is Options.MaxPullsPerUser's default.
	DefaultMaxPullsPerUser = 2
	// DefaultMaxPulls is Options.MaxPulls's default.
	DefaultMaxPulls = 4
	// DefaultMaxImageSize is the most Options.MaxImageSize defaults to;
	// less on a file system smaller than twice that.
	DefaultMaxImageSize = 64 << 30
	// DefaultSharedStoreMaxPerUser is Options.SharedStoreMaxPerUser's
	// default: room for a few of the largest images a node takes
	// (DefaultMaxImageSize), and no user's images fill the store.
	DefaultSharedStoreMaxPerUser = 256 << 30
	// DefaultHelperTimeout is Options.HelperTimeout's default: a podman
	// save of a large image takes minutes, not a quarter of an hour.
	DefaultHelperTimeout = 15 * time.Minute
)

// fsSize is the size in bytes of the file system holding dir.
func fsSize(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Blocks) * st.Bsize, nil //nolint:gosec // block counts fit
}

// defaultLimits fills in the limits left zero in o from the sizes of the
// cache's and the work directory's file systems: MaxBytes half the
// cache's, MaxImageSize half the work directory's (at most
// DefaultMaxImageSize: unpacked, squashed and its blobs, an image needs
// more than that room at once). Negative values, no limit, are left as
// they are.
func defaultLimits(o *Options, cacheFS, tmpFS int64) {
	if o.MaxBytes == 0 {
		o.MaxBytes = cacheFS / 2
	}
	if o.MaxImageSize == 0 {
		o.MaxImageSize = min(DefaultMaxImageSize, tmpFS/2)
	}
	if o.MaxPullsPerUser == 0 {
		o.MaxPullsPerUser = DefaultMaxPullsPerUser
	}
	if o.MaxPulls == 0 {
		o.MaxPulls = DefaultMaxPulls
	}
	if o.HelperTimeout <= 0 {
		o.HelperTimeout = DefaultHelperTimeout
	}
	if o.SharedStoreMaxPerUser == 0 {
		o.SharedStoreMaxPerUser = DefaultSharedStoreMaxPerUser
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
