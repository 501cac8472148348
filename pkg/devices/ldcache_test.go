package devices

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/devices/devicestest"
)

func encodeLdCache(entries []LdEntry, flags uint32) []byte {
	var np []string
	for _, e := range entries {
		np = append(np, e.Name, e.Path)
	}
	return devicestest.EncodeLdCache(flags, np...)
}

func TestParseLdCacheFake(t *testing.T) {
	t.Parallel()
	want := []LdEntry{{"libcuda.so.1", "/usr/lib64/libcuda.so.1"}, {"libc.so.6", "/lib64/libc.so.6"}}
	root := t.TempDir()
	devicestest.WriteLdCache(t, root, "libcuda.so.1", "/usr/lib64/libcuda.so.1", "libc.so.6", "/lib64/libc.so.6")
	got, err := ReadLdCache(root)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ReadLdCache = %v, %v; want %v", got, err, want)
	}
	// 32-bit and foreign entries are not for this machine's programs.
	if hostArch != 0 {
		got, err := ParseLdCache(encodeLdCache(want, flagELFLibc6))
		if err != nil || len(got) != 0 {
			t.Errorf("32-bit entries: %v, %v; want none", got, err)
		}
	}
	if _, err := ReadLdCache(t.TempDir()); err != ErrNoLdCache {
		t.Errorf("no cache: err = %v, want ErrNoLdCache", err)
	}
}

func TestParseLdCacheBad(t *testing.T) {
	t.Parallel()
	good := encodeLdCache([]LdEntry{{"libx.so.1", "/lib/libx.so.1"}}, flagELFLibc6|hostArch)
	for name, b := range map[string][]byte{
		"empty":         nil,
		"other magic":   []byte("something else entirely, long enough for a header......"),
		"truncated":     good[:newHeaderLen+4],
		"huge count":    append(append([]byte{}, good[:20]...), append([]byte{0xff, 0xff, 0xff, 0x7f}, good[24:]...)...),
		"offset beyond": append(append([]byte{}, good[:newHeaderLen+4]...), append([]byte{0xff, 0xff, 0, 0}, good[newHeaderLen+8:]...)...),
		"old truncated": []byte(oldMagic),
	} {
		if _, err := ParseLdCache(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// The host's own cache, in both formats glibc writes, reads as ldconfig -p
// prints it.
func TestParseLdCacheMatchesLdconfig(t *testing.T) {
	t.Parallel()
	ldconfig, err := exec.LookPath("ldconfig")
	if err != nil {
		t.Skipf("%q not found in PATH", "ldconfig")
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err != nil {
		t.Skip("this host has no /etc/ld.so.cache")
	}
	caches := []string{"/etc/ld.so.cache"}
	compat := filepath.Join(t.TempDir(), "compat.cache")
	if os.Geteuid() == 0 && exec.Command(ldconfig, "-c", "compat", "-C", compat).Run() == nil {
		caches = append(caches, compat)
	}
	line := regexp.MustCompile(`^\s+(\S+) \(libc6,([^)]*)\) => (\S+)$`)
	for _, cache := range caches {
		out, err := exec.Command(ldconfig, "-p", "-C", cache).Output()
		if err != nil {
			t.Fatalf("ldconfig -p -C %s: %v", cache, err)
		}
		var want []LdEntry
		for _, l := range strings.Split(string(out), "\n") {
			// Only this machine's 64-bit entries, without hwcap subdirectories.
			if m := line.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[2], "x86-64") && hostArch == 0x0300 && !strings.Contains(m[2], "hwcap") {
				want = append(want, LdEntry{m[1], m[3]})
			}
		}
		if len(want) == 0 {
			t.Skipf("no x86-64 entries in ldconfig -p (arch %x)", hostArch)
		}
		b, _ := os.ReadFile(cache)
		got, err := ParseLdCache(b)
		if err != nil {
			t.Fatalf("%s: %v", cache, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %d entries, ldconfig -p shows %d; first %v vs %v", cache, len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
		}
	}
}

func FuzzParseLdCache(f *testing.F) {
	f.Add(encodeLdCache([]LdEntry{{"libx.so.1", "/lib/libx.so.1"}}, flagELFLibc6|hostArch))
	f.Add([]byte(oldMagic + "\x00\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseLdCache(b)
		if err == nil {
			for _, e := range entries {
				if e.Name == "" || !strings.HasPrefix(e.Path, "/") {
					t.Errorf("bad entry %+v", e)
				}
			}
		}
	})
}
