package cgotest

import (
	"path"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// optionNames are the plugin's options that take a value: slurmstepd
// (root) parses each from the job's srun line or environment.
var optionNames = []string{"image", "workdir", "mounts", "env", "name", "save", "unshare", "hooks"}

// FuzzPluginOptions feeds any value to the plugin's C option parsers (run as
// root in slurmstepd, on what the user typed): they must not crash, and
// what they accept must be what the daemon is sent: mounts with a source,
// an absolute destination, and an entry that parses back the same.
func FuzzPluginOptions(f *testing.F) {
	for _, s := range []struct {
		opt uint8
		v   string
	}{
		{2, "/data:/data:ro,/scratch,/a:/b:ro+rbind"}, {2, "./x:/y"}, {2, "a:b:c:d"}, {2, ",,,"}, {2, "/x:/y:ro+nosuid+nodev+noexec"},
		{0, "nvcr.io#nvidia/pytorch:24.01"}, {0, "./app.sqsh"}, {4, "keep:no_exec"}, {6, "net,ipc,uts"}, {3, "A,B,PATH"},
		{7, "mpi,no-gpu"}, {1, "/work"}, {5, "/tmp/x.sqsh"},
	} {
		f.Add(s.opt, s.v)
	}
	f.Fuzz(func(t *testing.T, opt uint8, v string) {
		if strings.IndexByte(v, 0) >= 0 {
			return // a C string ends there: Slurm hands the plugin C strings
		}
		name := optionNames[int(opt)%len(optionNames)]
		a, err := ParseOptions(Option{name, v})
		if err != nil {
			if err.Error() == "" {
				t.Errorf("%s=%q refused without a reason", name, v)
			}
			return
		}
		for _, m := range a.Mounts {
			if m.Src == "" || !path.IsAbs(m.Dst) {
				t.Fatalf("%s=%q accepted a mount without a source or an absolute destination: %+v", name, v, m)
			}
			entry := m.Src + ":" + m.Dst
			if m.Flags != "" {
				entry += ":" + m.Flags
			}
			b, err := ParseOptions(Option{"mounts", entry})
			if err != nil || len(b.Mounts) != 1 || b.Mounts[0] != m {
				t.Fatalf("%s=%q: the mount %+v sent as %q parses back as %+v, %v", name, v, m, entry, b.Mounts, err)
			}
		}
	})
}

// The plugin decodes fstab's escapes (for srun's checks) as the daemon
// does (for the mounts): the same path, or an error on both sides.
func FuzzFstabUnescapeAgrees(f *testing.F) {
	for _, s := range []string{`/a\040b`, `\134\072\054`, `\0`, `\000`, `\777`, `x\`, `\12345`, "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			return // a C string ends there
		}
		got, err := UnescapeFstab(s, len(s)+1)
		want, werr := wire.UnescapeFstab(s)
		if (err != nil) != (werr != nil) || got != want {
			t.Fatalf("%q: plugin %q, %v; daemon %q, %v", s, got, err, want, werr)
		}
	})
}
