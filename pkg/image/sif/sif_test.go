package sif

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/sif/siftest"
)

// rootBytes stands for a squashfs: FindRoot never reads the partition.
var rootBytes = []byte("hsqs" + strings.Repeat("root file system ", 100))

// write makes a SIF of objs and returns its bytes.
func write(t testing.TB, objs ...siftest.Object) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.sif")
	if err := siftest.Write(p, objs...); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func root() siftest.Object { return siftest.Root(sif.FsSquash, bytes.NewReader(rootBytes)) }

func find(b []byte) (Root, error) { return FindRoot(bytes.NewReader(b), int64(len(b))) }

func TestFindRoot(t *testing.T) {
	t.Parallel()
	for name, objs := range map[string][]siftest.Object{
		"root alone": {root()},
		// As apptainer build lays it out, with a data partition and a
		// generic JSON object besides.
		"several objects": {siftest.Deffile("Bootstrap: docker\n"), siftest.Labels(`{"a":"b"}`), root(),
			{Type: sif.DataGenericJSON, Data: strings.NewReader(`{}`)},
			{Type: sif.DataPartition, Data: strings.NewReader("data"), FS: sif.FsRaw, Part: sif.PartData}},
	} {
		t.Run(name, func(t *testing.T) {
			b := write(t, objs...)
			if !Is(bytes.NewReader(b)) {
				t.Fatal("Is: false for a SIF")
			}
			r, err := find(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := b[r.Offset : r.Offset+r.Size]; !bytes.Equal(got, rootBytes) {
				t.Errorf("the root partition at %d (%d bytes) is not the squashfs written: %.20q", r.Offset, r.Size, got)
			}
			if r.Arch != runtime.GOARCH {
				t.Errorf("Arch %q", r.Arch)
			}
		})
	}
}

func TestIsNotSIF(t *testing.T) {
	t.Parallel()
	for _, b := range [][]byte{nil, rootBytes, []byte(strings.Repeat("x", 32) + "SIF_MAGIX\x00")} {
		if Is(bytes.NewReader(b)) {
			t.Errorf("Is(%.40q) = true", b)
		}
	}
}

// Images Apptainer runs whose root we cannot, or that it would not run
// either: refused with the reason.
func TestFindRootUnsupported(t *testing.T) {
	t.Parallel()
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	ext3 := func() siftest.Object { return siftest.Root(sif.FsExt3, strings.NewReader("ext3")) }
	for _, c := range []struct {
		name, want string
		objs       []siftest.Object
	}{
		{"ext3", "root file system is ext3, not squashfs", []siftest.Object{ext3()}},
		{"encrypted", "encrypted", []siftest.Object{siftest.Root(sif.FsEncryptedSquashfs, bytes.NewReader(rootBytes))}},
		{"gocryptfs", "encrypted", []siftest.Object{siftest.Root(sif.FsGocryptfsSquashfs, bytes.NewReader(rootBytes))}},
		{"overlay only", "no root file system partition, only an overlay (Ext3)", []siftest.Object{siftest.Overlay(strings.NewReader("ext3"))}},
		{"root and overlay", "carries an overlay partition", []siftest.Object{root(), siftest.Overlay(strings.NewReader("ext3"))}},
		{"other arch", "built for " + other, []siftest.Object{{Type: sif.DataPartition, Data: bytes.NewReader(rootBytes), FS: sif.FsSquash, Part: sif.PartPrimSys, Arch: other}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := find(write(t, c.objs...))
			if !errors.Is(err, image.ErrUnsupported) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrUnsupported saying %q", err, c.want)
			}
		})
	}
}

// descriptor returns where the i-th descriptor of the SIF b starts, and
// the size of one.
func descriptor(t *testing.T, b []byte, i int) (int, int) {
	total := int(binary.LittleEndian.Uint64(b[88:]))
	off := int(binary.LittleEndian.Uint64(b[96:]))
	size := int(binary.LittleEndian.Uint64(b[104:]))
	if total == 0 || size%total != 0 {
		t.Fatalf("descriptors: %d in %d bytes", total, size)
	}
	return off + i*(size/total), size / total
}

// A SIF a user crafted or cut short: refused as not usable, without a
// panic, a huge allocation or a partition outside the file.
func TestFindRootCorrupt(t *testing.T) {
	t.Parallel()
	good := write(t, siftest.Deffile("x"), root())
	// The root's descriptor is the second: its Offset and Size fields.
	d, _ := descriptor(t, good, 1)
	offAt, sizeAt := d+17, d+25
	if got := int64(binary.LittleEndian.Uint64(good[sizeAt:])); got != int64(len(rootBytes)) {
		t.Fatalf("the layout of a descriptor is not as assumed: size field %d", got)
	}
	patch := func(at int, v int64) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint64(b[at:], uint64(v))
		return b
	}
	for _, c := range []struct {
		name, want string
		b          []byte
	}{
		{"empty", "too short", nil},
		{"header only", "descriptors", good[:128]},
		{"cut in the descriptors", "descriptors", good[:d+100]},
		{"cut in the root", "outside the file", good[:len(good)-10]},
		{"huge descriptor count", "declares", patch(88, 1<<40)},
		{"negative descriptor count", "declares", patch(88, -1)},
		{"descriptors beyond the end", "outside the file", patch(96, int64(len(good)))},
		{"descriptors size huge", "outside the file", patch(104, 1<<62)},
		{"root offset beyond the end", "outside the file", patch(offAt, int64(len(good))+1)},
		{"root offset negative", "outside the file", patch(offAt, -4096)},
		{"root size huge", "outside the file", patch(sizeAt, 1<<62)},
		{"root size overflows", "outside the file", patch(sizeAt, 1<<63-1)},
		{"root size zero", "outside the file", patch(sizeAt, 0)},
		{"bad version", "incompatible SIF version", func() []byte { b := bytes.Clone(good); b[42] = '9'; return b }()},
		{"no objects", "no root file system partition", write(t)},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := find(c.b)
			if !errors.Is(err, image.ErrNotSquashfs) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrNotSquashfs saying %q", err, c.want)
			}
		})
	}
}

// Two root partitions (the library will not write them: the second
// descriptor is made one by hand).
func TestFindRootTwoRoots(t *testing.T) {
	t.Parallel()
	b := write(t, root(), siftest.Object{Type: sif.DataPartition, Data: bytes.NewReader(rootBytes), FS: sif.FsSquash, Part: sif.PartSystem})
	d, _ := descriptor(t, b, 1)
	// Extra (after DataType, Used, 3 ids, 3 int64s... Name[128]) holds
	// Fstype, Parttype: the part type is the second int32.
	extra := d + 4 + 1 + 4 + 4 + 4 + 8*7 + 128
	if got := sif.PartType(binary.LittleEndian.Uint32(b[extra+4:])); got != sif.PartSystem {
		t.Fatalf("the layout of a descriptor is not as assumed: part type %v", got)
	}
	binary.LittleEndian.PutUint32(b[extra+4:], uint32(sif.PartPrimSys))
	if _, err := find(b); !errors.Is(err, image.ErrNotSquashfs) || !strings.Contains(err.Error(), "2 root file system partitions") {
		t.Errorf("err = %v", err)
	}
}
