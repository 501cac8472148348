package wire

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseContainerRequestHooks(t *testing.T) {
	t.Parallel()
	m := New(Container, "job", "1", "step", "0", "uid", "0", "gid", "0", "image", "x",
		"hooks", "mpi,no-gpu", "command", "/usr/bin/hostname", "jobenv", "SLURM_STEP_GPUS=0,1", "jobenv", "PMIX_SERVER_TMPDIR=/a=b", "jobenv", "junk")
	r, err := ParseContainerRequest(m)
	if err != nil {
		t.Fatal(err)
	}
	if r.Hooks != "mpi,no-gpu" || r.Command != "/usr/bin/hostname" ||
		!reflect.DeepEqual(r.Env, map[string]string{"SLURM_STEP_GPUS": "0,1", "PMIX_SERVER_TMPDIR": "/a=b"}) {
		t.Errorf("got %+v", r)
	}
}

// The request's own paths: / and /.podman-hpc are the daemon's.
func TestParseUserMountReserved(t *testing.T) {
	for _, s := range []string{"/x:/", "/x:/.podman-hpc", "/x:/.podman-hpc/init", "/x:/.podman-hpc//init:ro", "/x:/a/../.podman-hpc/init", "/x:/./"} {
		if _, err := ParseUserMount(s); err == nil || !strings.Contains(err.Error(), "podman-hpc's own") {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseUserMount("/x:/.podman-hpc-data"); err != nil {
		t.Errorf("a sibling of the reserved directory: %v", err)
	}
}

// An error about one of the user's options says which, as an *OptionError;
// one about the request itself does not.
func TestParseContainerRequestErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kv     []string
		option string // "" for a request error
		msg    string
	}{
		{[]string{"mount", "/home:../home"}, "--container-mounts", `--container-mounts: destination "../home" climbs out of the container's root: Invalid cross-device link`},
		{[]string{"mount", "./data:/data"}, "--container-mounts", `--container-mounts: source "./data" is a relative path: the plugin resolves it in the job's working directory (is it the daemon's version?)`},
		{[]string{"save", "/tmp/"}, "--container-save", `--container-save: "/tmp/" is a directory; name the file to write`},
		{[]string{"name", "n", "name_mode", "bogus"}, "--container-name", `--container-name: unknown mode "bogus"`},
		{[]string{"unshare", "pid"}, "--container-unshare", `--container-unshare: unknown namespace "pid" (want net, ipc, uts)`},
		{[]string{"save", "s"}, "--container-save", `--container-save: "s" is not an absolute path`},
		{[]string{"script", "s"}, "", `request: batch script path "s" is not absolute`},
	} {
		m := New(Container, append([]string{"job", "1", "step", "0", "uid", "1", "gid", "1", "image", "x"}, tc.kv...)...)
		_, err := ParseContainerRequest(m)
		var oe *OptionError
		isOpt := errors.As(err, &oe)
		if err == nil || err.Error() != tc.msg || isOpt != (tc.option != "") || isOpt && oe.Option != tc.option {
			t.Errorf("%q: %v (option error %v), want %q about %q", tc.kv, err, isOpt, tc.msg, tc.option)
		}
	}
}

// The account the plugin resolved through NSS: taken as sent, the primary
// group first; what could break a line of /etc/passwd or /etc/group, or a
// first group other than the job's gid, is refused.
func TestParseContainerRequestAccount(t *testing.T) {
	base := func(kv ...string) *Message {
		return New(Container, append([]string{"job", "1", "step", "0", "uid", "7777", "gid", "7777", "image", "x"}, kv...)...)
	}
	r, err := ParseContainerRequest(base("user", "ldapuser", "home", "/home/ldapuser", "shell", "/bin/zsh",
		"group", "7777:ldapuser", "group", "7778:proj", "group", "7779:"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Account{Name: "ldapuser", Home: "/home/ldapuser", Shell: "/bin/zsh", Groups: []Group{{7777, "ldapuser"}, {7778, "proj"}, {7779, ""}}}
	if !reflect.DeepEqual(r.Account, want) {
		t.Errorf("account %+v, want %+v", r.Account, want)
	}
	if r, err := ParseContainerRequest(base()); err != nil || r.Account != nil {
		t.Errorf("no account fields: %+v, %v", r, err)
	}
	for name, kv := range map[string][]string{
		"colon in name":       {"user", "a:b", "group", "7777:a"},
		"newline in home":     {"user", "a", "home", "/h\nroot::0:0::/:/bin/sh", "group", "7777:a"},
		"relative home":       {"user", "a", "home", "h", "group", "7777:a"},
		"colon in shell":      {"user", "a", "shell", "/bin/sh:x", "group", "7777:a"},
		"no group":            {"user", "a"},
		"first group not gid": {"user", "a", "group", "0:root"},
		"bad gid":             {"user", "a", "group", "7777:a", "group", "x:y"},
		"newline in group":    {"user", "a", "group", "7777:a\nroot"},
		"empty name":          {"user", "", "group", "7777:a"},
	} {
		if _, err := ParseContainerRequest(base(kv...)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A relative --container-workdir is resolved inside the container's root, as
// a shell there would: "../" is the root itself.
func TestParseContainerRequestRelativeWorkdir(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"../": "/../", "w": "/w", "/abs/dir": "/abs/dir", "": ""} {
		r, err := ParseContainerRequest(New(Container, "job", "1", "step", "0", "uid", "1", "gid", "1", "image", "x", "workdir", in))
		if err != nil || r.Workdir != want {
			t.Errorf("workdir %q: %q, %v; want %q", in, r.Workdir, err, want)
		}
	}
}

// UnshareName is the option's name of each namespace it takes.
func TestUnshareName(t *testing.T) {
	t.Parallel()
	for _, n := range UnshareNamespaces {
		if got := UnshareName(unshareable[n]); got != n {
			t.Errorf("%s: %q", n, got)
		}
	}
	if got := UnshareName("pid"); got != "pid" {
		t.Errorf("pid: %q", got)
	}
}

// pyxis's mount syntax: relative destinations (inside the root), tmpfs and
// umount sources, every flag, fstab escapes.
func TestParseUserMount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want UserMount
		err  string
	}{
		{in: "/a", want: UserMount{Src: "/a", Dst: "/a"}},
		{in: "/a:b", want: UserMount{Src: "/a", Dst: "/b"}},
		{in: "/a:./b/", want: UserMount{Src: "/a", Dst: "/b"}},
		{in: "/a:/b/../c", want: UserMount{Src: "/a", Dst: "/c"}},
		{in: "/tmp:/mnt:unbindable+ro", want: UserMount{Src: "/tmp", Dst: "/mnt", Options: []string{"unbindable", "ro"}}},
		{in: "/tmp:/mnt:runbindable+rbind+bind", want: UserMount{Src: "/tmp", Dst: "/mnt", Options: []string{"runbindable"}}},
		{in: `/my\040dir:/in\072side:ro`, want: UserMount{Src: "/my dir", Dst: "/in:side", Options: []string{"ro"}}},
		{in: `/a\134b\x:/b`, want: UserMount{Src: `/a\b\x`, Dst: "/b"}},
		{in: "tmpfs:/scratch", want: UserMount{Src: "tmpfs", Dst: "/scratch"}},
		{in: "tmpfs:/s:size=1g+mode=1777+huge=within_size+noexec", want: UserMount{Src: "tmpfs", Dst: "/s", Options: []string{"size=1g", "mode=1777", "huge=within_size", "noexec"}}},
		{in: "umount:/root", want: UserMount{Src: "umount", Dst: "/root"}},
		{in: "/home:../home", err: "climbs out of the container's root: Invalid cross-device link"},
		{in: "/home:/a/../../home", err: "Invalid cross-device link"},
		{in: "/a:/b:suid", err: `unknown mount flag "suid"`},
		{in: "/a:/b:dev", err: `unknown mount flag "dev"`},
		{in: "tmpfs:/s:uid=0", err: `unknown tmpfs option "uid=0"`},
		{in: "tmpfs:/s:size=1g;rm", err: `bad value in tmpfs option "size=1g;rm"`},
		{in: "tmpfs:/s:mode=99999", err: "bad value"},
		{in: "tmpfs:/s:huge=deny", err: "bad value"},
		{in: "tmpfs:/s:suid", err: "unknown tmpfs option"},
		{in: "tmpfs", err: "needs a destination"},
		{in: "umount:/root:ro", err: "takes no flags"},
		{in: "data:/data", err: "is a relative path"},
		{in: `/a\000b:/b`, err: "bad escape"},
		{in: "/a::ro", err: "empty destination"},
	} {
		got, err := ParseUserMount(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %+v, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || !reflect.DeepEqual(got, tc.want)):
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
