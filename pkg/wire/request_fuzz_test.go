package wire

import (
	"fmt"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// checkRequest fails t unless r, which ParseContainerRequest accepted from
// m, says only what the daemon may act on: ids that are numbers, absolute
// paths, known names and modes, mounts checked as ParseUserMount checks them.
func checkRequest(t *testing.T, m *Message, r *ContainerRequest) {
	t.Helper()
	for k, v := range map[string]string{"job": r.Job, "step": r.Step} {
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			t.Fatalf("accepted %s %q", k, v)
		}
	}
	for k, v := range map[string]uint32{"uid": r.UID, "gid": r.GID} {
		got, _ := m.Get(k)
		if n, err := strconv.ParseUint(got, 10, 32); err != nil || uint32(n) != v {
			t.Fatalf("%s %q read as %d", k, got, v)
		}
	}
	if r.Image == "" && r.Name == "" {
		t.Fatal("accepted a request with neither image nor name")
	}
	for k, v := range map[string]string{"workdir": r.Workdir, "save": r.Save, "script": r.Script} {
		if v != "" && !path.IsAbs(v) {
			t.Fatalf("accepted %s %q, not absolute", k, v)
		}
	}
	if r.Name != "" {
		if !ValidName.MatchString(r.Name) {
			t.Fatalf("accepted name %q", r.Name)
		}
		if !slices.Contains([]string{"auto", "create", "exec", "no_exec"}, r.NameMode) {
			t.Fatalf("accepted name mode %q", r.NameMode)
		}
		if r.Scope != "job" && r.Scope != "global" {
			t.Fatalf("accepted scope %q", r.Scope)
		}
	}
	for _, ns := range r.Unshare {
		if !slices.Contains([]string{"network", "ipc", "uts"}, string(ns)) {
			t.Fatalf("accepted namespace %q", ns)
		}
	}
	for name := range r.Env {
		if name == "" || strings.Contains(name, "=") {
			t.Fatalf("accepted job variable %q", name)
		}
	}
	if got, want := len(r.Mounts), len(m.All("mount")); got != want {
		t.Fatalf("%d mounts from %d entries", got, want)
	}
	for _, um := range r.Mounts {
		checkMount(t, um)
	}
}

// checkMount fails t unless um names a source and an absolute destination,
// and its options are among those the user may ask for.
func checkMount(t *testing.T, um UserMount) {
	t.Helper()
	if um.Src == "" || !path.IsAbs(um.Dst) || path.Clean(um.Dst) != um.Dst || um.Dst == "/" {
		t.Fatalf("accepted mount %q -> %q", um.Src, um.Dst)
	}
	if um.IsTmpfs() {
		for _, o := range um.Options {
			if TmpfsOption(o) != nil {
				t.Fatalf("accepted tmpfs option %q", o)
			}
		}
		return
	}
	if !um.IsUmount() && !path.IsAbs(um.Src) {
		t.Fatalf("accepted the relative source %q", um.Src)
	}
	allowed := map[string]bool{}
	for _, opt := range MountFlags {
		allowed[opt] = opt != ""
	}
	for _, o := range um.Options {
		if !allowed[o] {
			t.Fatalf("accepted mount option %q", o)
		}
	}
}

// Each field of a CONTAINER request as the plugin would send it.
func FuzzParseContainerRequest(f *testing.F) {
	f.Add("1", "0", "1000", "1000", "docker://x/y:1", "/w", "/a:/b:ro+nosuid", "", "", "", "net,ipc", "CUDA_VISIBLE_DEVICES=0", "/s")
	f.Add("4294967295", "4294967294", "0", "0", "", "", "/a", "my.name-1", "create", "/out.sqsh", "uts", "=x", "")
	f.Add("-1", "0x1", "1e3", "", "x", "rel", ":/b", "bad/name", "auto", "rel", "pid", "A", "rel")
	f.Add("1", "0", "1", "1", "x", "", "/a:/b:c:d", "n", "bogus", "", ",", "", "")
	f.Fuzz(func(t *testing.T, job, step, uid, gid, image, workdir, mount, name, nameMode, save, unshare, jobenv, script string) {
		m := New(Container, "job", job, "step", step, "uid", uid, "gid", gid, "image", image,
			"workdir", workdir, "mount", mount, "name", name, "name_mode", nameMode, "save", save,
			"unshare", unshare, "jobenv", jobenv, "script", script)
		r, err := ParseContainerRequest(m)
		if err != nil {
			if r != nil {
				t.Fatalf("error %v with a request", err)
			}
			return
		}
		checkRequest(t, m, r)
	})
}

// A whole body off the socket: any keys, repeated or not, in any order.
func FuzzParseContainerRequestBody(f *testing.F) {
	for _, m := range []*Message{
		New(Container, "job", "1", "step", "0", "uid", "1000", "gid", "1000", "image", "x",
			"mount", "/a:/b", "mount", "/c:/d:ro", "jobenv", "A=1", "jobenv", "B", "auth", "{}"),
		New(Container, "job", "1", "step", "0", "uid", "1", "gid", "1", "name", "n", "name_mode", "exec", "scope", "global"),
		New(Container, "uid", "1", "uid", "x", "gid", "1", "job", "1", "step", "1", "image", "i"),
	} {
		b, _ := m.Marshal()
		f.Add(b[HeaderSize:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, err := ParseBody(body)
		if err != nil {
			return
		}
		m := &Message{Type: Container, Fields: fields}
		r, err := ParseContainerRequest(m)
		if err != nil {
			return
		}
		checkRequest(t, m, r)
	})
}

// --container-mounts entries: an entry accepted renders back to one that
// parses the same.
func FuzzParseUserMount(f *testing.F) {
	for _, s := range []string{"/a", "/a:/b", "/a:/b:ro", "/a:/b:ro+nosuid+rbind", "/a:/b:", "a:b", ":/b", "/a:/b:c:d", "/a:/b:ro+", "/a::ro",
		"/home:../home", `/a\040b:c\072d:unbindable`, "tmpfs:/t:size=10%+mode=0700+huge=advise", "umount:/root", `/\000:/x`, "/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		um, err := ParseUserMount(s)
		if err != nil {
			return
		}
		checkMount(t, um)
		again := escapeFstab(um.Src) + ":" + escapeFstab(um.Dst)
		if len(um.Options) > 0 {
			again += ":" + strings.Join(um.Options, "+")
		}
		um2, err := ParseUserMount(again)
		if err != nil || !reflect.DeepEqual(um, um2) {
			t.Fatalf("%q parsed as %+v; rendered %q parses as %+v, %v", s, um, again, um2, err)
		}
	})
}

// escapeFstab is UnescapeFstab's inverse for the characters an entry
// cannot hold as they are.
func escapeFstab(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == ':' || c == ',' || c == '+' || c <= ' ' {
			fmt.Fprintf(&b, "\\%03o", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// fstab's escapes: a decoded path holds no NUL, and escaping it again
// decodes back to it.
func FuzzUnescapeFstab(f *testing.F) {
	for _, s := range []string{`/a\040b`, `\134\134`, `\0`, `\000`, `\777`, `\40`, `x\`, `\12345`, "/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := UnescapeFstab(s)
		if err != nil {
			return
		}
		if strings.IndexByte(got, 0) >= 0 {
			t.Fatalf("%q decoded to %q, with a NUL", s, got)
		}
		if again, err := UnescapeFstab(escapeFstab(got)); err != nil || again != got {
			t.Fatalf("%q -> %q; escaped %q -> %q, %v", s, got, escapeFstab(got), again, err)
		}
	})
}
