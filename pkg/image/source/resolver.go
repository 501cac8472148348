package source

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// Options configure a Resolver. Zero values mean the documented defaults.
type Options struct {
	// RegistriesConf is the containers-registries.conf(5) file ("": the
	// system's); RegistriesConfDir its drop-in directory ("": the
	// system's registries.conf.d).
	RegistriesConf    string
	RegistriesConfDir string
	// PolicyPath is the containers-policy.json(5) file every image is
	// judged by ("": containers/image's own default; the store always
	// names one).
	PolicyPath string
	// TmpDir is a directory only root can write: the sanitised copies of
	// users' credentials, the copies of their archives and layouts, and
	// containers/image's big files go there.
	TmpDir string
	// RegistryTimeout bounds each attempt at a registry request that is
	// not a blob download (default 20s), and how long a blob download
	// may go without receiving data. RegistryAttempts is how many
	// attempts a failing request gets (default 3); RetryDelay the wait
	// before the second, growing with each (default 500ms).
	RegistryTimeout  time.Duration
	RegistryAttempts int
	RetryDelay       time.Duration
	// MaxImageSize bounds what one image may write to disk (a user's
	// file, archive, layout or store export as it is copied, the blobs
	// read to show an image): past it, image.ErrTooLarge. <= 0: none.
	MaxImageSize int64
	// HelperTimeout bounds an export from a user's local store (podman
	// save for podman://, the Docker daemon's for dockerd://): past it
	// the export is stopped, with every process it started, and it fails
	// with image.ErrHelperTimeout.
	HelperTimeout time.Duration
	// Podman is the binary podman:// runs as the user ("": from PATH);
	// DockerSocket the Docker daemon's socket dockerd:// connects to as
	// the user ("": DefaultDockerSocket).
	Podman, DockerSocket string
	// Log receives the warnings of retried downloads (default: discard).
	Log *slog.Logger
}

// Resolver finds images where a reference says they are, for one user at
// a time: it resolves names through registries.conf, asks registries with
// the user's credentials (and no one else's), reads local archives,
// layouts and stores as the user, and applies policy.json. What it opens
// is a Source. Its methods are safe for concurrent use; call Wait before
// the program ends, or TmpDir is left with copies in it.
type Resolver struct {
	o  Options
	bg sync.WaitGroup
}

// New returns a Resolver for o, its defaults filled in. It reads nothing
// yet: a missing registries.conf or policy.json fails the first request
// that needs it.
func New(o Options) *Resolver {
	if o.RegistryTimeout <= 0 {
		o.RegistryTimeout = 20 * time.Second
	}
	if o.RegistryAttempts <= 0 {
		o.RegistryAttempts = 3
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 500 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{o: o}
}

// Wait waits for the removal of the copies that released sources made
// (in the background: a big archive takes a while to delete).
func (rs *Resolver) Wait() {
	rs.bg.Wait()
}

// removeLater deletes a work directory in the background: a 1 GB copy
// takes a while to delete and the user need not wait for it.
func (rs *Resolver) removeLater(p string) {
	rs.bg.Add(1)
	go func() {
		defer rs.bg.Done()
		if err := os.RemoveAll(p); err != nil {
			rs.o.Log.Warn("cannot remove work directory", "path", p, "err", err)
		}
	}()
}

// CheckCredentialHelpers refuses o's registries.conf if its
// credential-helpers name anything but the auth file: containers/image
// would run those helpers as root for every user's pull and hand their
// answer (the node's credentials) to whoever asked.
func CheckCredentialHelpers(o Options) error {
	return checkCredentialHelpers(o.sysContext(""))
}

// containers/image's system-wide configuration files.
const (
	systemRegistriesDir     = "/etc/containers/registries.d"
	systemRegistriesConf    = "/etc/containers/registries.conf"
	systemRegistriesConfDir = "/etc/containers/registries.conf.d"
)

// SysContext is the containers/image configuration for one request.
// authFile is always set: with no file of its own, containers/image would
// read root's credentials (~/.docker/config.json, ...) on behalf of users.
func (rs *Resolver) SysContext(authFile string) *types.SystemContext {
	return rs.o.sysContext(authFile)
}

func (o Options) sysContext(authFile string) *types.SystemContext {
	// Disabled mode returns every candidate without prompting (a daemon
	// has no TTY); ShortCandidates then refuses ambiguity itself.
	mode := types.ShortNameModeDisabled
	return &types.SystemContext{
		SystemRegistriesConfPath:    o.RegistriesConf,
		SystemRegistriesConfDirPath: o.RegistriesConfDir,
		SignaturePolicyPath:         o.PolicyPath,
		// The system's lookaside configuration, never one under $HOME:
		// the resolve helper runs as the user, whose home may be
		// unreadable (or theirs to fill), and root's has no say either.
		RegistriesDirPath: systemRegistriesDir,
		AuthFilePath:      authFile,
		ShortNameMode:     &mode,
		// Root's own alias cache has no say in users' short names.
		UserShortNameAliasConfPath: filepath.Join(o.TmpDir, "no-short-name-aliases.conf"),
		BigFilesTemporaryDir:       o.TmpDir,
		DockerRegistryUserAgent:    "podman-hpc",
	}
}

func checkCredentialHelpers(sys *types.SystemContext) error {
	helpers, err := sysregistriesv2.CredentialHelpers(sys)
	if err != nil {
		return fmt.Errorf("registries.conf: %w", err)
	}
	if i := slices.IndexFunc(helpers, func(h string) bool { return h != sysregistriesv2.AuthenticationFileHelper }); i >= 0 {
		return fmt.Errorf("registries.conf: credential-helpers = %q: the daemon would run docker-credential-%s as root for every user's pull; remove the key (users' credentials come from their own auth.json)", helpers, helpers[i])
	}
	return nil
}
