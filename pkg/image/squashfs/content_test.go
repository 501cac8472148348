package squashfs

import (
	"errors"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

func TestLz4Block(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []byte
		want string
		bad  bool
	}{
		{in: []byte{0x50, 'h', 'e', 'l', 'l', 'o'}, want: "hello"},
		// "ab" then a match of 6 at offset 2: "abababab".
		{in: []byte{0x22, 'a', 'b', 0x02, 0x00, 0x00}, want: "abababab"},
		{in: []byte{0x22, 'a', 'b', 0x00, 0x00}, bad: true}, // offset 0
		{in: []byte{0x22, 'a', 'b', 0x09, 0x00}, bad: true}, // before the start
		{in: []byte{0xf0, 0xff, 0xff, 0xff}, bad: true},     // runs off the end
		{in: []byte{0x1f, 'a', 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}, bad: true}, // larger than the limit
	} {
		got, err := lz4Block(tc.in, metaBlockSize)
		if tc.bad != (err != nil) || (!tc.bad && string(got) != tc.want) {
			t.Errorf("lz4Block(%x) = %q, %v; want %q, bad %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestCheckListing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"drwxr-xr-x 0/0 27 2026-12-01 06:54 \n-rwxr-xr-x 0/0 3 2026-12-01 06:54 /bin/sh\n", ""},
		{"drwxrwsr-x 0/0 27 2026-12-01 06:54 /shared\n", ""}, // setgid directory
		{"lrwxrwxrwx 0/0 3 2026-12-01 06:54 /bin/sh -> busybox\n", ""},
		{"crw-rw-rw- 0/0 1,  3 2026-12-01 06:54 /dev/null\n", "/dev/null is a device node"},
		{"brw-rw---- 0/0 8,  0 2026-12-01 06:54 /sda\n", "/sda is a device node"},
		{"-rwsr-xr-x 0/0 3 2026-12-01 06:54 /bin/su\n", ""}, // inert on the nosuid mount
		{"-rwxr-Sr-x 0/0 3 2026-12-01 06:54 /g\n", ""},
		{"crw-rw-rw- something unexpected\n", "an entry is a device node"},
		{"name\ncrw-rw-rw- 0/0 1,  3 2026-12-01 06:54 /x\n", "/x is a device node"},
	} {
		err := checkListing(strings.NewReader(tc.in))
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.in, err)
			}
			continue
		}
		if !errors.Is(err, image.ErrUnsafeFile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}
