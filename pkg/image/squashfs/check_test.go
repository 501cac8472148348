package squashfs

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

func TestCheckSquashfs(t *testing.T) {
	imagetest.RequireBinary(t, "unsquashfs")
	files := map[string]string{"etc/os-release": "ID=x\n", "bin/app": strings.Repeat("payload ", 40000)}
	for i := range 200 {
		files[filepath.Join("many", strings.Repeat("d", i%7+1), "f"+string(rune('a'+i%26))+strings.Repeat("x", i))] = "x"
	}
	good := imagetest.MakeSquashfs(t, files, "-comp", "gzip")
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	variant := func(name string, edit func([]byte) []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, edit(slices.Clone(b)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	le16 := func(b []byte, off int, v uint16) { b[off], b[off+1] = byte(v), byte(v>>8) }
	cases := []struct {
		name string
		path string
		want string // "" = accepted
	}{
		{"good", good, ""},
		{"empty", variant("empty", func([]byte) []byte { return nil }), "too short for a superblock"},
		{"text", variant("text", func([]byte) []byte { return []byte(strings.Repeat("#!/bin/sh\n", 20)) }), "bad magic"},
		{"truncated", variant("truncated", func(b []byte) []byte { return b[:len(b)/2] }), "truncated: the superblock says"},
		{"lzma", variant("lzma", func(b []byte) []byte { le16(b, 20, 2); return b }), "compression id 2 cannot be mounted"},
		{"version", variant("version", func(b []byte) []byte { le16(b, 28, 3); return b }), "squashfs version 3.0"},
		{"blocksize", variant("blocksize", func(b []byte) []byte { le16(b, 22, 3); return b }), "corrupt superblock (block size"},
		{"tables", variant("tables", func(b []byte) []byte {
			// Overwrite the inode table (up to the directory table).
			inodes, dirs := binary.LittleEndian.Uint64(b[64:]), binary.LittleEndian.Uint64(b[72:])
			for i := inodes; i < dirs; i++ {
				b[i] = 0xa5
			}
			return b
		}), "unsquashfs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(context.Background(), "unsquashfs", tc.path)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, image.ErrNotSquashfs) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v; want image.ErrNotSquashfs with %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}
