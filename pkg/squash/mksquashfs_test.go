package squash

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

func TestParseCompression(t *testing.T) {
	cases := []struct {
		in   string
		want compressor
		err  string
	}{
		{in: "", want: compressor{"zstd", 3}},
		{in: "zstd", want: compressor{"zstd", 0}},
		{in: "zstd:19", want: compressor{"zstd", 19}},
		{in: "gzip:1", want: compressor{"gzip", 1}},
		{in: "lz4", want: compressor{"lz4", 0}},
		{in: "xz", want: compressor{"xz", 0}},
		{in: "lzo:9", want: compressor{"lzo", 9}},
		{in: "lzma", err: "not one the kernel can mount"},
		{in: "zstd:0", err: "level must be 1 to 22"},
		{in: "gzip:x", err: "level must be 1 to 9"},
		{in: "lz4:1", err: "lz4 takes no level"},
	}
	for _, tc := range cases {
		got, err := parseCompression(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseCompression(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseCompression(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestMksquashfsArgs(t *testing.T) {
	cases := []struct {
		m    mksquashfs
		want string
	}{
		{mksquashfs{Comp: compressor{"zstd", 3}, Processors: 2},
			"/r /o.sqfs -noappend -exit-on-error -no-progress -quiet -mem 512M -comp zstd -Xcompression-level 3 -processors 2"},
		{mksquashfs{Comp: compressor{"lz4", 0}},
			"/r /o.sqfs -noappend -exit-on-error -no-progress -quiet -mem 512M -comp lz4"},
	}
	for _, tc := range cases {
		if got := strings.Join(tc.m.args("/r", "/o.sqfs"), " "); got != tc.want {
			t.Errorf("args = %q\nwant   %q", got, tc.want)
		}
	}
}

func TestMksquashfsFailure(t *testing.T) {
	dir := t.TempDir()
	n := 0
	script := func(body string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("mksquashfs-%d", n))
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		cmd  string
		is   error
		want string
	}{
		{script("echo 'Write failed because No space left on device' >&2; exit 1"), image.ErrNoSpace, "no space left"},
		{script("echo line1; echo line2; echo 'FATAL ERROR: bad thing' >&2; exit 1"), nil, "exit status 1: line1; line2; FATAL ERROR: bad thing"},
		{filepath.Join(dir, "absent"), nil, "install squashfs-tools"},
	}
	for _, tc := range cases {
		err := mksquashfs{Command: tc.cmd, Comp: compressor{"lz4", 0}}.run(context.Background(), dir, filepath.Join(dir, "out"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: %v; want %q", tc.cmd, err, tc.want)
		}
	}
}

// makeSquashfs squashes a small tree and returns the file.
func makeSquashfs(t *testing.T, files map[string]string, extra ...string) string {
	t.Helper()
	requireBinary(t, "mksquashfs")
	src := t.TempDir()
	for name, body := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "image.sqsh")
	args := append([]string{src, out, "-noappend", "-quiet", "-no-progress"}, extra...)
	if b, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, b)
	}
	return out
}

func TestCheckSquashfs(t *testing.T) {
	requireBinary(t, "unsquashfs")
	files := map[string]string{"etc/os-release": "ID=x\n", "bin/app": strings.Repeat("payload ", 40000)}
	for i := range 200 {
		files[filepath.Join("many", strings.Repeat("d", i%7+1), "f"+string(rune('a'+i%26))+strings.Repeat("x", i))] = "x"
	}
	good := makeSquashfs(t, files, "-comp", "gzip")
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
			err := checkSquashfs(context.Background(), "unsquashfs", tc.path)
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
