package cgotest

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

func TestArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    []Option
		want    Args
		wantErr string
	}{
		{
			name: "registry reference",
			opts: []Option{{"image", "nvcr.io#nvidia/pytorch:24.01"}},
			want: Args{Image: "nvcr.io#nvidia/pytorch:24.01", Writable: -1, MountHome: -1},
		},
		{
			name: "same image twice is fine (srun line and #SBATCH)",
			opts: []Option{{"image", "ubuntu:22.04"}, {"image", "ubuntu:22.04"}},
			want: Args{Image: "ubuntu:22.04", Writable: -1, MountHome: -1},
		},
		{
			name:    "two different images",
			opts:    []Option{{"image", "a"}, {"image", "b"}},
			wantErr: "given twice with different values",
		},
		{name: "empty image", opts: []Option{{"image", ""}}, wantErr: "empty image name"},
		{name: "image with space", opts: []Option{{"image", "a b"}}, wantErr: "white space"},
		{
			name: "mounts with flags and defaults",
			opts: []Option{{"mounts", "/data:/data:ro,/scratch,/a:/b:ro+rbind"}, {"mounts", "/c:/d"}},
			want: Args{Mounts: []Mount{
				{"/data", "/data", "ro"}, {"/scratch", "/scratch", ""}, {"/a", "/b", "ro+rbind"}, {"/c", "/d", ""},
			}, Writable: -1, MountHome: -1},
		},
		{
			name: "a relative source as its own destination is in the root; tmpfs, umount, unbindable, escapes",
			opts: []Option{{"mounts", `/a:/b,./x,tmpfs:/t:size=1g+mode=1777+huge=within_size,umount:/root,/tmp:/mnt:unbindable+ro,/my\040dir:/d`}},
			want: Args{Mounts: []Mount{
				{"/a", "/b", ""}, {"./x", "/./x", ""}, {"tmpfs", "/t", "size=1g+mode=1777+huge=within_size"}, {"umount", "/root", ""},
				{"/tmp", "/mnt", "unbindable+ro"}, {`/my\040dir`, "/d", ""},
			}, Writable: -1, MountHome: -1},
		},
		{name: "relative destination, as pyxis refuses it", opts: []Option{{"mounts", "/tmp:mnt"}}, wantErr: `destination "mnt" in "/tmp:mnt" is relative: give the absolute path in the container (/mnt)`},
		{name: "relative destination of a tmpfs", opts: []Option{{"mounts", "tmpfs:t"}}, wantErr: "is relative"},
		{name: "destination climbs out", opts: []Option{{"mounts", "/home:../home"}}, wantErr: `destination "../home" climbs out of the container's root: Invalid cross-device link`},
		{name: "destination climbs out later", opts: []Option{{"mounts", "/home:/a/../../b"}}, wantErr: "Invalid cross-device link"},
		{name: "tmpfs without a destination", opts: []Option{{"mounts", "tmpfs"}}, wantErr: "needs a destination"},
		{name: "tmpfs uid is the daemon's", opts: []Option{{"mounts", "tmpfs:/t:uid=0"}}, wantErr: `bad tmpfs option "uid=0"`},
		{name: "tmpfs bad size", opts: []Option{{"mounts", "tmpfs:/t:size=1x"}}, wantErr: "bad tmpfs option"},
		{name: "tmpfs bad mode", opts: []Option{{"mounts", "tmpfs:/t:mode=8"}}, wantErr: "bad tmpfs option"},
		{name: "umount with flags", opts: []Option{{"mounts", "umount:/root:ro"}}, wantErr: "takes no flags"},
		{name: "suid is never a flag", opts: []Option{{"mounts", "/a:/b:suid"}}, wantErr: `unknown mount flag "suid"`},
		{name: "unknown mount flag", opts: []Option{{"mounts", "/a:/b:rw+bogus"}}, wantErr: `unknown mount flag "bogus"`},
		{name: "too many colons", opts: []Option{{"mounts", "/a:/b:ro:x"}}, wantErr: `"/a:/b:ro:x" has too many ':'`},
		{name: "empty mount", opts: []Option{{"mounts", ":"}}, wantErr: `empty source or destination in ":"`},
		{name: "mount without destination", opts: []Option{{"mounts", "/tmp:"}}, wantErr: `empty source or destination in "/tmp:"`},
		{name: "empty source", opts: []Option{{"mounts", ":/b"}}, wantErr: "empty source"},
		{name: "empty mounts", opts: []Option{{"mounts", ""}}, wantErr: "empty value"},
		{name: "workdir", opts: []Option{{"workdir", "/work"}}, want: Args{Workdir: "/work", Writable: -1, MountHome: -1}},
		{name: "relative workdir, resolved inside by the daemon", opts: []Option{{"workdir", "../"}}, want: Args{Workdir: "../", Writable: -1, MountHome: -1}},
		{
			name: "env names",
			opts: []Option{{"env", "PATH,LD_LIBRARY_PATH"}, {"env", "_X1"}},
			want: Args{EnvNames: []string{"PATH", "LD_LIBRARY_PATH", "_X1"}, Writable: -1, MountHome: -1},
		},
		{name: "bad env name", opts: []Option{{"env", "PATH,1X"}}, wantErr: `"1X" is not a valid variable name`},
		{name: "env trailing comma (pyxis refuses it)", opts: []Option{{"env", "PATH,"}}, wantErr: "empty variable name"},
		{name: "env leading comma", opts: []Option{{"env", ",PATH"}}, wantErr: "empty variable name"},
		{name: "env two commas", opts: []Option{{"env", "A,,B"}}, wantErr: "empty variable name"},
		{name: "writable", opts: []Option{{"writable", ""}, {"writable", ""}}, want: Args{Writable: 1, MountHome: -1}},
		{name: "name defaults to auto", opts: []Option{{"name", "my.ctr-1"}}, want: Args{Name: "my.ctr-1", NameMode: "auto", Writable: -1, MountHome: -1}},
		{name: "name with mode", opts: []Option{{"name", "x:no_exec"}}, want: Args{Name: "x", NameMode: "no_exec", Writable: -1, MountHome: -1}},
		{name: "name bad mode", opts: []Option{{"name", "x:attach"}}, wantErr: `unknown mode "attach"`},
		{name: "name bad chars", opts: []Option{{"name", "a/b"}}, wantErr: "may hold only letters"},
		{name: "name empty", opts: []Option{{"name", ":auto"}}, wantErr: "1 to 63 characters"},
		{name: "two names", opts: []Option{{"name", "a"}, {"name", "b"}}, wantErr: "given twice"},
		{name: "save", opts: []Option{{"save", "/x/y.sqfs"}}, want: Args{Save: "/x/y.sqfs", Writable: -1, MountHome: -1}},
		{name: "save into a directory", opts: []Option{{"save", "/tmp/"}}, wantErr: `"/tmp/" is a directory`},
		{name: "unshare", opts: []Option{{"unshare", "net,uts"}}, want: Args{Unshare: "net,uts", Writable: -1, MountHome: -1}},
		{name: "unshare pid", opts: []Option{{"unshare", "net,pid"}}, wantErr: `unknown namespace "pid"`},
		{name: "hooks", opts: []Option{{"hooks", "mpi,no-gpu,01-marker"}, {"hooks", "mpi,no-gpu,01-marker"}}, want: Args{Hooks: "mpi,no-gpu,01-marker", Writable: -1, MountHome: -1}},
		{name: "hooks twice, different", opts: []Option{{"hooks", "mpi"}, {"hooks", "gpu"}}, wantErr: "given twice with different values"},
		{name: "empty hooks", opts: []Option{{"hooks", ""}}, wantErr: "empty value"},
		{name: "hooks with a space", opts: []Option{{"hooks", "mpi, gpu"}}, wantErr: "letters, digits"},
		{name: "writable and readonly", opts: []Option{{"writable", ""}, {"readonly", ""}}, wantErr: "conflicts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseOptions(tc.opts...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "--container-") {
					t.Errorf("error %q does not name the option", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	def, err := ParseConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Socket: "/run/podman-hpc/podman-hpcd.sock", ContainerMountHome: true, SbatchSupport: true, Timeout: 600}
	if got, err := ParseConfig("execute_entrypoint=1", "container_scope=global"); err != nil || !got.ExecuteEntrypoint || !got.ScopeGlobal {
		t.Errorf("execute_entrypoint/container_scope: %+v, %v", got, err)
	}
	if _, err := ParseConfig("container_scope=node"); err == nil || !strings.Contains(err.Error(), "must be job or global") {
		t.Errorf("container_scope=node: %v", err)
	}
	if def != want {
		t.Errorf("defaults = %+v, want %+v", def, want)
	}
	got, err := ParseConfig("socket=/x/y.sock", "container_mount_home=0", "container_writable=yes", "sbatch_support=false", "timeout=30")
	if err != nil {
		t.Fatal(err)
	}
	want = Config{Socket: "/x/y.sock", ContainerWritable: true, Timeout: 30}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for arg, msg := range map[string]string{
		"bogus=1":                  `unknown key "bogus"`,
		"socket":                   "is not key=value",
		"=1":                       "is not key=value",
		"socket=relative":          "must be an absolute path",
		"container_writable=maybe": "is not a boolean",
		"timeout=0":                "between 1 and 86400",
		"timeout=12x":              "between 1 and 86400",
	} {
		_, err := ParseConfig(arg)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseConfig(%q) err = %v, want %q", arg, err, msg)
		}
	}
}

// slurmstepd makes relative paths absolute in the job's working directory,
// as a shell there reads them; a mount source's with fstab's escapes for
// what an entry cannot hold.
func TestResolve(t *testing.T) {
	t.Parallel()
	got, err := ResolveOptions("/home/u/my job:1",
		Option{"image", "./app.sqsh"}, Option{"save", "out/c.sqsh"},
		Option{"mounts", "./:/data,data/f:/f,/abs:/abs,tmpfs:/t,umount:/root"})
	if err != nil {
		t.Fatal(err)
	}
	want := Args{
		Image: "/home/u/my job:1/./app.sqsh", Save: "/home/u/my job:1/out/c.sqsh",
		Mounts: []Mount{
			{`/home/u/my\040job\0721/./`, "/data", ""}, {`/home/u/my\040job\0721/data/f`, "/f", ""},
			{"/abs", "/abs", ""}, {"tmpfs", "/t", ""}, {"umount", "/root", ""},
		},
		Writable: -1, MountHome: -1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	for _, m := range got.Mounts {
		entry := m.Src + ":" + m.Dst
		um, err := wire.ParseUserMount(entry)
		if err != nil {
			t.Errorf("the daemon refuses %q: %v", entry, err)
		} else if m.Src[0] == '/' && !strings.HasPrefix(um.Src, "/home/u/my job:1/") && um.Src != "/abs" {
			t.Errorf("%q decodes to %q", entry, um.Src)
		}
	}
	if a, err := ResolveOptions("/w", Option{"image", "registry/x:1"}); err != nil || a.Image != "registry/x:1" {
		t.Errorf("a registry image: %+v, %v", a, err)
	}
	if a, err := ResolveOptions("/", Option{"save", "x"}, Option{"mounts", "y:/y"}); err != nil || a.Save != "/x" || a.Mounts[0].Src != "/y" {
		t.Errorf("in /: %+v, %v", a, err)
	}
	if _, err := ResolveOptions("rel", Option{"save", "x"}); err == nil {
		t.Error("resolved in a relative working directory")
	}
}

// A batch script's step inherits sbatch's paths made absolute; naming the
// same file again relative to where it runs is no conflict, another is.
func TestSamePathTwice(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, opt := range []string{"image", "save"} {
		if _, err := ParseOptions(Option{opt, dir + "/./x.sqsh"}, Option{opt, "./x.sqsh"}); err != nil {
			t.Errorf("%s: %v", opt, err)
		}
		if _, err := ParseOptions(Option{opt, dir + "/./x.sqsh"}, Option{opt, "./y.sqsh"}); err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("%s: two files: %v", opt, err)
		}
	}
}

// srun's checks before the job: a missing source as pyxis says it, a save
// path that is a directory; relative paths are left to slurmstepd (srun
// does not know the job's --chdir).
func TestCheckLocal(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("f", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts []Option
		err  string
	}{
		{[]Option{{"mounts", dir + "/f:/f," + dir + ":/d,tmpfs:/t,umount:/u,./not-here:/n"}, {"save", "."}}, ""},
		{[]Option{{"mounts", dir + "/nope:/x"}}, "--container-mounts: source path does not exist: " + dir + "/nope"},
		{[]Option{{"mounts", "/no/such\\040dir:/x"}}, "--container-mounts: source path does not exist: /no/such dir"},
		{[]Option{{"mounts", dir + "/f/x:/x"}}, "source path does not exist: " + dir + "/f/x"},
		{[]Option{{"save", dir}}, "is a directory"},
	} {
		err := CheckLocal(tc.opts...)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: %v, want %q", tc.opts, err, tc.err)
		}
	}
}

// The plugin decodes fstab's escapes as the daemon does.
func TestUnescapeFstab(t *testing.T) {
	t.Parallel()
	for _, s := range []string{`/a\040b`, `\134\072\054`, `\0`, `\777`, `x\`, `\12345`, `\000`, "plain"} {
		want, werr := wire.UnescapeFstab(s)
		got, err := UnescapeFstab(s, 64)
		if (err != nil) != (werr != nil) || got != want {
			t.Errorf("%q: C %q, %v; Go %q, %v", s, got, err, want, werr)
		}
	}
	if _, err := UnescapeFstab("/long/path", 4); err == nil {
		t.Error("no error for a buffer too short")
	}
}

// The plugin and the daemon accept the same tmpfs options.
func TestTmpfsOptionsAgree(t *testing.T) {
	t.Parallel()
	for _, o := range []string{"size=1g", "size=10%", "size=", "size=1x", "size=012345678901234567890", "nr_blocks=5k", "nr_blocks=5%",
		"nr_inodes=1000", "mode=0", "mode=1777", "mode=01777", "mode=001777", "mode=8", "mode=017777", "huge=within_size", "huge=deny",
		"ro", "rw", "noexec", "nosuid", "nodev", "suid", "uid=0", "gid=0", "mpol=default", "=", ""} {
		_, cerr := ParseOptions(Option{"mounts", "tmpfs:/t:" + o})
		_, goerr := wire.ParseUserMount("tmpfs:/t:" + o)
		if (cerr == nil) != (goerr == nil) {
			t.Errorf("%q: plugin %v, daemon %v", o, cerr, goerr)
		}
	}
}
