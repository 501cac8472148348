package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	indexName    = "index.json"
	indexVersion = 1
)

// index is Dir/index.json: what is cached, for whom, and under which
// names. It is only touched under Cache.mu and only replaced whole
// (temp file, fsync, rename), so a killed daemon leaves the old or the new
// one, never half of one.
type index struct {
	Version int               `json:"version"`
	Images  map[string]*entry `json:"images"` // by digest

	written time.Time // when this process last wrote it
	dirty   bool      // use times changed since (touch)
}

// touchEvery is how often a change of use times alone reaches the file:
// every container's start marks its image used twice (Get, then the end
// of its pin), and rewriting the whole index each time was a share of
// the start's CPU. The times in memory, which eviction reads, are always
// current; Close writes what is pending, and a crash loses at most this
// much of them (an image then looks idle that long more).
const touchEvery = 30 * time.Second

// entry is one cached image: Dir/images/<hex>.squashfs and <hex>.json.
type entry struct {
	Digest   string             `json:"digest"`
	Size     int64              `json:"size"`
	Created  time.Time          `json:"created"`
	LastUsed time.Time          `json:"lastUsed"`
	Users    []uint32           `json:"users"` // uids the registry (or the file) confirmed
	Refs     map[string]*refUse `json:"refs,omitempty"`
	// Sources are the registry repositories (HOST/NAME, sorted) that
	// served the image's blobs, to the pull that made it or to a user who
	// showed them since: a registry's answer from one of them is the
	// right to the image, from any other it is not (right.go). None (an
	// entry of an older daemon, or of a local archive): every user not
	// among Users shows the blobs.
	Sources []string `json:"sources,omitempty"`
	// Checks is the contentChecks the image was made under; Open drops
	// images made under older ones, which may hold what is now refused.
	Checks int `json:"checks,omitempty"`

	config ImageConfig // from <hex>.json, loaded by Open
}

// contentChecks counts the revisions of what an image may not hold, and
// of who may have been handed it: 1 refuses device nodes, setuid files and
// trusted.*/security.* xattrs in squashfs files, and trusted.* xattrs and
// sparse files in layers; 2 keys squashfs files apart from manifests, and
// hands a local archive's image out only for its layers (right.go). Before
// 2, a file's entry could not be told from a manifest's, nor a user who
// showed the layers from one who showed a manifest alone.
const contentChecks = 2

// refUse records a name an entry was reached by.
type refUse struct {
	Users []uint32 `json:"users"` // who used this name
	// Resolved is when a registry last said that this name is this
	// digest (zero for local files).
	Resolved time.Time `json:"resolved"`
}

func loadIndex(path string) (*index, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &index{Version: indexVersion, Images: map[string]*entry{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if ix.Version != indexVersion {
		return nil, fmt.Errorf("%s: version %d, want %d", path, ix.Version, indexVersion)
	}
	if ix.Images == nil {
		ix.Images = map[string]*entry{}
	}
	for d, e := range ix.Images {
		if e == nil || e.Digest != d {
			return nil, fmt.Errorf("%s: entry %q is inconsistent", path, d)
		}
		if e.Refs == nil {
			e.Refs = map[string]*refUse{}
		}
	}
	return &ix, nil
}

// save replaces dir/index.json atomically and durably.
func (ix *index) save(dir string) error {
	return ix.write(dir, true)
}

// touch saves a change of use times only: atomically, but without the
// fsyncs (milliseconds each) on the path of every cached Get; a crash
// may lose it, which costs nothing but a slightly earlier eviction.
func (ix *index) touch(dir string) error {
	if time.Since(ix.written) < touchEvery {
		ix.dirty = true
		return nil
	}
	return ix.write(dir, false)
}

// flush writes the use times touch held back, if any.
func (ix *index) flush(dir string) error {
	if !ix.dirty {
		return nil
	}
	return ix.write(dir, false)
}

func (ix *index) write(dir string, durable bool) error {
	b, err := json.MarshalIndent(ix, "", "\t") // map keys come out sorted
	if err != nil {
		return err
	}
	if err := writeFile(dir, indexName, b, durable); err != nil {
		return err
	}
	ix.written, ix.dirty = time.Now(), false
	return nil
}

// writeFileAtomic writes dir/name through a temp file in dir (cleaned by
// Open if we die first), fsynced before the rename and with the directory
// fsynced after it.
func writeFileAtomic(dir, name string, b []byte) error {
	return writeFile(dir, name, b, true)
}

func writeFile(dir, name string, b []byte, durable bool) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if durable {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// addUID returns the sorted set s with uid added.
func addUID(s []uint32, uid uint32) []uint32 {
	i, found := slices.BinarySearch(s, uid)
	if found {
		return s
	}
	return slices.Insert(s, i, uid)
}

func hasUID(s []uint32, uid uint32) bool {
	_, found := slices.BinarySearch(s, uid)
	return found
}

func removeUID(s []uint32, uid uint32) []uint32 {
	if i, found := slices.BinarySearch(s, uid); found {
		return slices.Delete(s, i, i+1)
	}
	return s
}

func readConfig(p string) (ImageConfig, error) {
	var cfg ImageConfig
	b, err := os.ReadFile(p)
	if err != nil {
		return cfg, err
	}
	return cfg, json.Unmarshal(b, &cfg)
}
