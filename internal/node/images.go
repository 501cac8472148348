package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/internal/metrics"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
)

// ImportError is a failed pull or import of the step's image, worded as
// pyxis words it ("failed to import docker image: IMAGE: CAUSE"): site docs
// and users' scripts search for those words.
type ImportError struct {
	Image string
	Err   error
}

func (e *ImportError) Error() string {
	// The cache's error names the reference too when it is the one given.
	cause := strings.TrimPrefix(e.Err.Error(), fmt.Sprintf("pull %q: ", e.Image))
	return "failed to import docker image: " + e.Image + ": " + cause
}
func (e *ImportError) Unwrap() error { return e.Err }

// squashStore is the node's image store (pkg/image/store) as containers use
// it: the imageStore of container.go.
type squashStore struct {
	cache *store.Cache
	// widenAfter is Options.WidenAfter (nil: none).
	widenAfter func(time.Duration) (done func())
	metrics    *metrics.Metrics
	pulls      pullsInFlight
}

func openImageStore(ctx context.Context, cfg config.Config, log *slog.Logger, m *metrics.Metrics) (*squashStore, error) {
	c, err := store.Open(ctx, store.Options{
		Dir:                   cfg.CacheDir,
		MaxBytes:              cfg.CacheMaxBytes,
		MaxImageSize:          cfg.MaxImageSize,
		MaxPullsPerUser:       cfg.MaxPullsPerUser,
		MaxPulls:              cfg.MaxPulls,
		HelperTimeout:         cfg.HelperTimeout,
		MaxAge:                cfg.CacheMaxAge,
		Compression:           cfg.Compression,
		RegistriesConf:        cfg.RegistriesConf,
		PolicyPath:            cfg.Policy,
		TagTTL:                cfg.TagTTL,
		SharedStore:           cfg.SharedStore,
		SharedStoreMaxPerUser: cfg.SharedStoreMaxPerUser,
		DockerSocket:          cfg.DockerSocket,
		Log:                   log,
		Evicted:               m.Evicted,
	})
	if err != nil {
		return nil, err
	}
	return &squashStore{cache: c, metrics: m}, nil
}

// pullWidensAfter: a cached image's Get takes a few ms; one that runs
// longer is pulling.
const pullWidensAfter = 50 * time.Millisecond

// pull is the cache's Get, with every CPU once it turns out to be a pull;
// it is counted (a hit, or a miss and its pull) and seen in status while
// it runs.
func (s *squashStore) pull(ctx context.Context, ref string, o store.PullOptions) (*store.Image, error) {
	if s.widenAfter != nil {
		defer s.widenAfter(pullWidensAfter)()
	}
	p := s.pulls.start(ref, o.UID)
	defer s.pulls.end(p)
	o.Progress = p.watch(o.Progress)
	img, err := s.cache.Get(ctx, ref, o)
	s.count(p, err)
	return img, err
}

func (s *squashStore) get(ctx context.Context, ref string, cred credential, acct account, auth []byte, progress func(string)) (*image, error) {
	o := pullOptions(ref, cred, auth, progress)
	o.Home, o.User = acct.Home, acct.Name
	img, err := s.pull(ctx, ref, o)
	if err != nil {
		return nil, err
	}
	return &image{Digest: img.Digest, Path: img.Path, Env: img.Config.Env, Entrypoint: img.Config.Entrypoint, WorkingDir: img.Config.WorkingDir, Apptainer: img.Config.Apptainer}, nil
}

func (s *squashStore) pin(digest string) (func(), error) { return s.cache.Pin(digest) }

// pullOptions are a user's pull: their identity, their registry
// credentials, and progress as one line every few seconds at most.
func pullOptions(ref string, cred credential, auth []byte, progress func(string)) store.PullOptions {
	o := store.PullOptions{UID: cred.UID, GID: cred.GID, Groups: cred.Groups, AuthJSON: auth}
	if progress != nil {
		node, _ := os.Hostname()
		out := func(msg string) { progress(node + ": " + msg) }
		p := &progressLine{out: out, ref: ref}
		o.Progress = func(r store.Progress) {
			// A note (credential helpers not run, waiting for a pull slot)
			// is said at once, not held back as progress is.
			if r.Phase == "note" {
				out(ref + ": " + r.Message)
				return
			}
			p.report(r)
		}
	}
	return o
}

// describe turns one of the cache's reports into a line for the user.
func describe(ref string, p store.Progress) string {
	switch p.Phase {
	case "resolving":
		return "pulling " + ref
	case "downloading":
		if p.Message != "" {
			return fmt.Sprintf("%s: %s", ref, p.Message)
		}
		if p.Total <= 0 {
			// No layer's size is known yet (a pull that fails at its
			// first request says so before anything is sized).
			return ref + ": downloading"
		}
		return fmt.Sprintf("%s: downloaded %.1f of %.1f MB", ref, float64(p.Done)/(1<<20), float64(p.Total)/(1<<20))
	case "squashing":
		return fmt.Sprintf("%s: making the squashfs (%s)", ref, p.Message)
	case "exporting":
		return fmt.Sprintf("%s: exporting the image from your store (%s)", ref, p.Message)
	case "done":
		return ref + ": image ready"
	}
	return fmt.Sprintf("%s: %s", ref, p.Phase)
}

// pruneEvery evicts by the cache's limits every period until ctx is done.
func (s *squashStore) pruneEvery(ctx context.Context, period time.Duration, log *slog.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if gone, err := s.cache.Prune(ctx, false, 0); err != nil {
				log.Warn("prune", "err", err)
			} else if len(gone) > 0 {
				log.Info("pruned by age or size", "images", len(gone))
			}
		}
	}
}

// jobPins is what each tag resolved to for a job on this node, its first
// use there: every later step's srun on the node (those of a batch script
// run on its first node) gets the same digest. Keyed by job, user and
// reference: a user who names another job's id only reaches their own
// entries. Dropped at the job's end (EndJob); bounded, oldest first.
type jobPins struct {
	mu    sync.Mutex
	pins  map[jobPinKey]string
	order []jobPinKey
}

type jobPinKey struct {
	job string
	uid uint32
	ref string
}

// maxJobPins bounds the entries a node keeps (a few per running job).
const maxJobPins = 4096

func (p *jobPins) get(k jobPinKey) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.pins[k]
	return v, ok
}

func (p *jobPins) put(k jobPinKey, v string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pins == nil {
		p.pins = map[jobPinKey]string{}
	}
	if _, ok := p.pins[k]; ok {
		return
	}
	for len(p.order) >= maxJobPins {
		delete(p.pins, p.order[0])
		p.order = p.order[1:]
	}
	p.pins[k] = v
	p.order = append(p.order, k)
}

func (p *jobPins) dropJob(job string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.order[:0]
	for _, k := range p.order {
		if k.job == job {
			delete(p.pins, k)
			continue
		}
		kept = append(kept, k)
	}
	p.order = kept
}
