package squashfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

func TestParseCompression(t *testing.T) {
	cases := []struct {
		in   string
		want Compressor
		err  string
	}{
		{in: "", want: Compressor{"zstd", 3}},
		{in: "zstd", want: Compressor{"zstd", 0}},
		{in: "zstd:19", want: Compressor{"zstd", 19}},
		{in: "gzip:1", want: Compressor{"gzip", 1}},
		{in: "lz4", want: Compressor{"lz4", 0}},
		{in: "xz", want: Compressor{"xz", 0}},
		{in: "lzo:9", want: Compressor{"lzo", 9}},
		{in: "lzma", err: "not one the kernel can mount"},
		{in: "zstd:0", err: "level must be 1 to 22"},
		{in: "gzip:x", err: "level must be 1 to 9"},
		{in: "lz4:1", err: "lz4 takes no level"},
	}
	for _, tc := range cases {
		got, err := ParseCompression(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCompression(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseCompression(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestMksquashfsArgs(t *testing.T) {
	cases := []struct {
		m    Mksquashfs
		want string
	}{
		{Mksquashfs{Comp: Compressor{"zstd", 3}, Processors: 2},
			"/r /o.sqfs -noappend -exit-on-error -no-progress -quiet -mem 512M -comp zstd -Xcompression-level 3 -processors 2"},
		{Mksquashfs{Comp: Compressor{"lz4", 0}},
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
		err := Mksquashfs{Command: tc.cmd, Comp: Compressor{"lz4", 0}}.Run(context.Background(), dir, filepath.Join(dir, "out"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: %v; want %q", tc.cmd, err, tc.want)
		}
	}
}
