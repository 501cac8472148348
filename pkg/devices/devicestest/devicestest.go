// Package devicestest makes fake node and image trees for tests of device
// discovery and of the modules that use it.
package devicestest

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Tree makes files (empty; a trailing '/' makes a directory) under a new
// root and returns it. Discovery by name takes plain files for device nodes.
func Tree(t testing.TB, paths ...string) string {
	t.Helper()
	root := t.TempDir()
	Add(t, root, paths...)
	return root
}

// Add makes more files under root, as Tree does.
func Add(t testing.TB, root string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			os.MkdirAll(full, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Mknod makes a character device node at root/path, mode 0666; it skips
// the test when not root (mknod needs CAP_MKNOD).
func Mknod(t testing.TB, root, path string, major, minor uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making device nodes needs root")
	}
	full := filepath.Join(root, path)
	os.MkdirAll(filepath.Dir(full), 0o755)
	if err := unix.Mknod(full, unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor))); err != nil {
		t.Skipf("mknod %s: %v", path, err)
	}
	os.Chmod(full, 0o666)
}

// WriteLdCache writes root/etc/ld.so.cache in glibc's format, mapping each
// name to its path (name, path, name, path...), for this machine's 64-bit
// programs.
func WriteLdCache(t testing.TB, root string, namePath ...string) {
	t.Helper()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "etc/ld.so.cache"), EncodeLdCache(0x0003|hostArch(), namePath...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// EncodeLdCache returns a new-format cache whose entries carry flags.
func EncodeLdCache(flags uint32, namePath ...string) []byte {
	const headerLen, entryLen = 48, 24
	n := len(namePath) / 2
	var strs, body bytes.Buffer
	base := uint32(headerLen + n*entryLen)
	for i := 0; i < n; i++ {
		k := base + uint32(strs.Len())
		strs.WriteString(namePath[2*i] + "\x00")
		v := base + uint32(strs.Len())
		strs.WriteString(namePath[2*i+1] + "\x00")
		binary.Write(&body, binary.LittleEndian, []uint32{flags, k, v, 0, 0, 0})
	}
	var b bytes.Buffer
	b.WriteString("glibc-ld.so.cache1.1")
	binary.Write(&b, binary.LittleEndian, []uint32{uint32(n), uint32(strs.Len())})
	b.Write(make([]byte, headerLen-b.Len()))
	b.Write(body.Bytes())
	b.Write(strs.Bytes())
	return b.Bytes()
}

func hostArch() uint32 {
	return map[string]uint32{"amd64": 0x0300, "arm64": 0x0a00, "ppc64le": 0x0500, "riscv64": 0x1000}[runtime.GOARCH]
}

// Lib builds a shared library with soname at root/dir/file (with gcc; the
// test skips without it), plus a symlink soname -> file beside it.
func Lib(t testing.TB, root, dir, file, soname string) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skipf("%q not found in PATH", "gcc")
	}
	full := filepath.Join(root, dir)
	os.MkdirAll(full, 0o755)
	if out, err := exec.Command(gcc, "-shared", "-nostdlib", "-Wl,-soname,"+soname, "-o", filepath.Join(full, file), "-x", "c", "/dev/null").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	if soname != file {
		os.Symlink(file, filepath.Join(full, soname))
	}
}
