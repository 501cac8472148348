package node

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// A container's record reads back as written; one whose id is not its
// bundle's, or that is a symlink, is not a record.
func TestRecordRoundTrip(t *testing.T) {
	bundle := t.TempDir()
	os.WriteFile(filepath.Join(bundle, bundleIDFile), []byte("phpc-5-n-up"), 0o600)
	c := &container{id: "phpc-5-n-up", bundle: bundle, req: &wire.ContainerRequest{Job: "5", Step: "0", UID: 1000, Name: "up"},
		img: &image{Digest: "sha256:ab", Path: "/cache/ab.sqfs"}, rootfs: bundle + "/rootfs", env: []string{"A=1"},
		workdir: "/w", nsNames: []string{"mnt"}, named: true, created: time.Unix(100, 0), initPid: os.Getpid(),
		jobs: map[string]bool{"5": true}}
	m := &manager{log: slog.New(slog.DiscardHandler), containers: map[string]*container{}}
	m.containers[c.id] = c
	m.persist(c)
	r, err := readRecord(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != c.id || r.Req.Name != "up" || r.Img.Digest != "sha256:ab" || r.Workdir != "/w" || !r.Named || r.InitPid != os.Getpid() ||
		len(r.Jobs) != 1 || r.Jobs[0] != "5" || !r.Created.Equal(c.created) || r.InitMntNS == [2]uint64{} {
		t.Errorf("read back %+v", r)
	}
	if r.Kept != nil {
		t.Errorf("a named container recorded as kept: %+v", r.Kept)
	}
	// A kept step container's reuse state reads back: the next daemon
	// keeps it for the job's steps.
	c.reuse = reuseState{key: "k", job: jobIdentity{Dirs: []string{"/cg/job_5"}, ID: fileID{1, 2}}, hooksOnCommand: true,
		binds: []bindIdentity{{Src: "/data", ID: fileID{3, 4}}}, stepDirs: []string{"/p.%s"}}
	m.persist(c)
	if r, err := readRecord(bundle); err != nil || r.Kept == nil || r.Kept.Key != "k" || !r.Kept.Job.equal(c.reuse.job) ||
		!r.Kept.HooksOnCommand || len(r.Kept.Binds) != 1 || r.Kept.Binds[0] != c.reuse.binds[0] || r.Kept.StepDirs[0] != "/p.%s" {
		t.Errorf("kept record read back %+v, %v", r, err)
	}
	c.reuse = reuseState{}
	// A container removed meanwhile is not written.
	os.Remove(filepath.Join(bundle, recordFile))
	delete(m.containers, c.id)
	m.persist(c)
	if _, err := os.Stat(filepath.Join(bundle, recordFile)); err == nil {
		t.Error("a removed container's record written")
	}
	m.persist(c)
	m.containers[c.id] = c
	m.persist(c)
	os.WriteFile(filepath.Join(bundle, bundleIDFile), []byte("phpc-6-n-up"), 0o600)
	if _, err := readRecord(bundle); err == nil {
		t.Error("a record of another id read")
	}
	os.WriteFile(filepath.Join(bundle, bundleIDFile), []byte("phpc-5-n-up"), 0o600)
	os.Rename(filepath.Join(bundle, recordFile), filepath.Join(bundle, "elsewhere"))
	os.Symlink("elsewhere", filepath.Join(bundle, recordFile))
	if _, err := readRecord(bundle); err == nil {
		t.Error("a record through a symlink read")
	}
}
