// Package config reads the daemon's configuration file
// (/etc/podman-hpc/podman-hpcd.conf: "key = value" lines, documented key by
// key in contrib/slurm/podman-hpcd.conf), hooks and modules included.
//
// It owns the keys, their defaults and their checks: a Config that Load
// returns holds only absolute paths, known modules, sizes and durations
// that parsed; nothing else in the daemon reads the file.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
	"github.com/podman-hpc/podman-hpc/pkg/loopfs"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// DefaultPath is where serve looks for its config file.
const DefaultPath = "/etc/podman-hpc/podman-hpcd.conf"

// DefaultSocket is the socket serve listens on without systemd, and the one
// the client commands dial.
const DefaultSocket = "/run/podman-hpc/podman-hpcd.sock"

// DefaultWritableSize is writable_size's default: room for a pip or conda
// install of a large framework (PyTorch with CUDA takes about 6 GiB).
const DefaultWritableSize = 16 << 30

// Config is the daemon's configuration; contrib/slurm/podman-hpcd.conf
// documents every key.
type Config struct {
	Socket   string     // used when systemd passes no socket
	LogLevel slog.Level // debug, info, warn, error
	// LogFormat is the log's line format: "text" (slog's key=value) or
	// "json" (one JSON object a line). Either way, on the journal's
	// stream each line carries its syslog priority (internal/logging).
	LogFormat string
	StateDir  string           // node-local: bundles, mounts, the runtime's state
	CacheDir  string           // node-local: the squashfs image cache
	Runtime   string           // "auto", or the OCI runtime's name or path
	Mounts    []wire.UserMount // the site's mounts for every container
	// BatchMounts are bound into the batch script's container only: the
	// host's Slurm client, so that the script's srun, which runs inside,
	// starts steps that inherit the image. Missing sources are skipped.
	BatchMounts []wire.UserMount
	// RegistriesConf is containers-registries.conf(5) for pulls; "" for
	// the system's. Policy is containers-policy.json(5).
	RegistriesConf string
	Policy         string
	// The image cache: evicted beyond CacheMaxBytes (0: half its file
	// system; -1: no limit) or CacheMaxAge unused (0: no limit); squashfs
	// Compression ("" for the cache's default).
	CacheMaxBytes int64
	CacheMaxAge   time.Duration
	Compression   string
	// MaxImageSize bounds what one image may take on disk (0: half the
	// cache's file system, at most 64G; -1: no limit); MaxPullsPerUser
	// the pulls one user has running at once (a further one waits; -1:
	// no limit). store.Options documents both.
	MaxImageSize    int64
	MaxPullsPerUser int
	// MaxPulls: the pulls all users have running at once (-1: no limit).
	MaxPulls int
	// ImageLinger: how long an image stays mounted after its last
	// container (0: unmounted with it).
	ImageLinger time.Duration
	// ReuseIdle: how long a step's container is kept, once its last step
	// has ended, for the job's next step of the same image and options
	// to join (node.reuse.go); never past the job's end. 0: every step
	// gets a container of its own.
	ReuseIdle time.Duration
	// TagTTL: a tag the registry confirmed for a user this recently is
	// not asked again for that user (0: ask every time).
	TagTTL time.Duration
	// UserPathTimeout bounds each open of what a user names, done by a
	// helper process of theirs (pkg/asuser): a file system that does
	// not answer fails the step after this long instead of holding it.
	UserPathTimeout time.Duration
	// HelperTimeout bounds a program run on a user's behalf whose work
	// the user's files or configuration decide: podman save for
	// podman:// (store.Options.HelperTimeout), and mksquashfs for
	// podman-hpcd export and --container-save. Past it the program is
	// killed with every process it started.
	HelperTimeout time.Duration
	// WritableDir is where writable containers' writes go (node-local
	// disk, root's): each in a file system of its own of WritableSize
	// bytes (pkg/loopfs), a file that goes with the container. A user's
	// writable containers on the node (named and parked ones included)
	// hold at most WritableMaxPerUser bytes together (-1: no limit).
	WritableDir        string
	WritableSize       int64
	WritableMaxPerUser int64
	// MetricsListen is the host:port of the Prometheus metrics listener
	// ("": none). Check warns of one that is not a loopback address.
	MetricsListen string
	// PprofSocket is a Unix socket where the daemon serves Go's profiles
	// (net/http/pprof) to root ("": none, the default): created mode
	// 0600 in a directory only root may write, for an admin profiling a
	// node.
	PprofSocket string
	// Hooks are the OCI hooks and built-in modules (hooks.go).
	Hooks Hooks
	// SharedStore is the site image store ("": none): a directory every
	// node mounts, root's, where one node builds an image for all. The
	// images one user's pulls stored there hold at most
	// SharedStoreMaxPerUser bytes (-1: no limit); their least recently
	// used go first.
	SharedStore           string
	SharedStoreMaxPerUser int64
	// DockerSocket is the Docker daemon's socket dockerd:// connects to,
	// as the user ("": source.DefaultDockerSocket).
	DockerSocket string
}

// Default returns the configuration of a node with no config file.
func Default() Config {
	return Config{
		Socket:    DefaultSocket,
		LogLevel:  slog.LevelInfo,
		LogFormat: "text",
		StateDir:  "/run/podman-hpc/state",
		CacheDir:  "/var/lib/podman-hpc/images",
		// Beside the cache: the node-local disk the admin has already
		// given podman-hpc, not the tmpfs under /run that slurmd needs.
		WritableDir:        "/var/lib/podman-hpc/writable",
		WritableSize:       DefaultWritableSize,
		WritableMaxPerUser: 4 * DefaultWritableSize,
		Runtime:            "auto",
		TagTTL:             time.Minute,
		UserPathTimeout:    30 * time.Second,
		HelperTimeout:      store.DefaultHelperTimeout,
		MaxPullsPerUser:    store.DefaultMaxPullsPerUser,
		// The store's default, here too: check-config prints it.
		SharedStoreMaxPerUser: store.DefaultSharedStoreMaxPerUser,
		MaxPulls:              store.DefaultMaxPulls,
		ImageLinger:           5 * time.Minute,
		ReuseIdle:             5 * time.Minute,
		Hooks:                 defaultHooks(),
	}
}

// Load reads "key = value" lines ('#' starts a comment) over the
// defaults. A missing file is fine only when it is the default path: an
// admin who names a file means it. Every bad line is reported, one line
// each ("FILE:LINE: KEY ...: the fix"), joined in the error, with the
// Config of the lines that loaded; a file it cannot read, the zero Config.
// A key given twice is an error naming both lines (the first stays): an
// admin who appends a line to change a key must not find the other one
// silently in force after a later edit.
func Load(path string, explicit bool) (Config, error) {
	c := Default()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return c, nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	var errs []error
	seen := map[string]int{} // key: the line it was first given on
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%s:%d: want key = value, got %q", path, n, line))
			continue
		}
		key = strings.TrimSpace(key)
		if first, ok := seen[key]; ok {
			errs = append(errs, fmt.Errorf("%s:%d: %s given again (first on line %d); keep one of the two lines", path, n, key, first))
			continue
		}
		seen[key] = n
		if err := c.set(key, strings.TrimSpace(value)); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", path, n, err))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read config %s: %w", path, err))
	}
	return c, errors.Join(errs...)
}

func (c *Config) set(key, value string) error {
	paths := map[string]*string{
		"socket": &c.Socket, "state_dir": &c.StateDir, "cache_dir": &c.CacheDir,
		"registries_conf": &c.RegistriesConf, "policy": &c.Policy, "shared_store": &c.SharedStore,
		"docker_socket": &c.DockerSocket, "writable_dir": &c.WritableDir,
		"debug_pprof_socket": &c.PprofSocket,
	}
	if dst, ok := paths[key]; ok {
		if !filepath.IsAbs(value) {
			return fmt.Errorf("%s %q: not an absolute path", key, value)
		}
		*dst = value
		return nil
	}
	switch key {
	case "runtime":
		if value == "" {
			return fmt.Errorf("runtime: empty (auto, crun, runc or a path)")
		}
		c.Runtime = value
	case "mounts", "batch_mounts":
		var list []wire.UserMount
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			m, err := wire.ParseUserMount(s)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if !filepath.IsAbs(m.Src) {
				return fmt.Errorf("%s: source %q is not an absolute path", key, m.Src)
			}
			list = append(list, m)
		}
		if key == "mounts" {
			c.Mounts = list
		} else {
			c.BatchMounts = list
		}
	case "cache_max_size", "max_image_size":
		// auto: derived from the disk; 0: no limit (-1 for squash).
		n := int64(0)
		if value != "auto" {
			var err error
			if n, err = parseSize(value); err != nil {
				return fmt.Errorf("%s %q: %w (or auto, or 0 for no limit)", key, value, err)
			}
			if n == 0 {
				n = -1
			}
		}
		*map[string]*int64{"cache_max_size": &c.CacheMaxBytes, "max_image_size": &c.MaxImageSize}[key] = n
	case "writable_size":
		n, err := parseSize(value)
		if err != nil || n < loopfs.MinSize {
			return fmt.Errorf("writable_size %q: want a size of at least 16M, such as 16G (each writable container's own file system)", value)
		}
		c.WritableSize = n
	case "writable_max_per_user", "shared_store_max_per_user":
		n, err := parseSize(value)
		if err != nil {
			return fmt.Errorf("%s %q: %w (or 0 for no limit)", key, value, err)
		}
		if n == 0 {
			n = -1
		}
		*map[string]*int64{"writable_max_per_user": &c.WritableMaxPerUser, "shared_store_max_per_user": &c.SharedStoreMaxPerUser}[key] = n
	case "max_pulls_per_user", "max_pulls":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return fmt.Errorf("%s %q: want a number (0: no limit)", key, value)
		}
		if n == 0 {
			n = -1
		}
		if key == "max_pulls" {
			c.MaxPulls = n
		} else {
			c.MaxPullsPerUser = n
		}
	case "user_path_timeout", "helper_timeout":
		d, err := time.ParseDuration(value)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s %q: want a duration such as 30s", key, value)
		}
		*map[string]*time.Duration{"user_path_timeout": &c.UserPathTimeout, "helper_timeout": &c.HelperTimeout}[key] = d
	case "cache_max_age", "image_linger", "tag_ttl", "reuse_idle":
		d, err := parseAge(value)
		if err != nil {
			return fmt.Errorf("%s %q: %w", key, value, err)
		}
		*map[string]*time.Duration{"cache_max_age": &c.CacheMaxAge, "image_linger": &c.ImageLinger, "tag_ttl": &c.TagTTL, "reuse_idle": &c.ReuseIdle}[key] = d
	case "compression":
		if err := squashfs.CheckCompression(value); err != nil {
			return fmt.Errorf("%w (or remove the line for %s)", err, squashfs.DefaultCompression)
		}
		c.Compression = value
	case "metrics_listen":
		if value != "" {
			if err := checkListen(value); err != nil {
				return fmt.Errorf("metrics_listen %q: %w", value, err)
			}
		}
		c.MetricsListen = value
	case "log_format":
		if value != "text" && value != "json" {
			return fmt.Errorf("log_format %q: want text or json", value)
		}
		c.LogFormat = value
	case "log_level":
		if err := c.LogLevel.UnmarshalText([]byte(value)); err != nil {
			return fmt.Errorf("log_level %q: want debug, info, warn or error", value)
		}
	default:
		if known, err := c.Hooks.set(key, value); known {
			return err
		}
		return fmt.Errorf("unknown key %q (known: socket, log_level, log_format, state_dir, cache_dir, cache_max_size, cache_max_age, max_image_size, max_pulls_per_user, max_pulls, compression, tag_ttl, writable_dir, writable_size, writable_max_per_user, image_linger, reuse_idle, user_path_timeout, helper_timeout, runtime, mounts, batch_mounts, registries_conf, policy, metrics_listen, debug_pprof_socket, shared_store, shared_store_max_per_user, docker_socket, %s); remove the line or fix its name", key, strings.Join(hooksKeys, ", "))
	}
	return nil
}

// parseSize reads a byte count with an optional K, M, G or T suffix (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("want a size such as 500G")
	}
	// Beyond int64, v*mult would wrap, to a negative size (no limit).
	if v > math.MaxInt64/mult {
		return 0, fmt.Errorf("too large (at most %dT)", math.MaxInt64>>40)
	}
	return v * mult, nil
}

// maxDays is the longest age in days a time.Duration holds (106751d).
const maxDays = int(math.MaxInt64 / int64(24*time.Hour))

// parseAge reads a duration, with d for days besides Go's units.
func parseAge(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		days, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || days < 0 {
			return 0, fmt.Errorf("want a duration such as 30d or 12h")
		}
		if days > maxDays {
			return 0, fmt.Errorf("too long (at most %dd)", maxDays)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want a duration such as 30d or 12h")
	}
	return d, nil
}
