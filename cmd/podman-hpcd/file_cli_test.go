package main

import (
	"bytes"
	"strings"
	"testing"
)

// enroot's default names: scheme, user and registry dropped, '/' and ':'
// made '+'.
func TestImportName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"docker://ubuntu:22.04":                  "ubuntu+22.04.sqsh",
		"ubuntu:22.04":                           "ubuntu+22.04.sqsh",
		"docker://library/ubuntu:22.04":          "library+ubuntu+22.04.sqsh",
		"docker://nvcr.io#nvidia/pytorch:24.01":  "nvidia+pytorch+24.01.sqsh",
		"alice@nvcr.io#nvidia/pytorch:24.01":     "nvidia+pytorch+24.01.sqsh",
		"alice@ubuntu":                           "ubuntu.sqsh",
		"nvcr.io/nvidia/cuda:12":                 "nvcr.io+nvidia+cuda+12.sqsh",
		"podman://localhost/app:1":               "localhost+app+1.sqsh",
		"dockerd://ubuntu:22.04":                 "ubuntu+22.04.sqsh",
		"ubuntu@sha256:abcd":                     "ubuntu+sha256+abcd.sqsh",
		"oci:/images/layout:v1":                  "layout+v1.sqsh",
		"docker-archive:./app.tar":               "app.sqsh",
		"./app.sqfs":                             "app.sqsh",
		"/x/../":                                 "image.sqsh",
		"oci-archive:/a/b.tar:registry.io/x:1.0": "b+registry.io+x+1.0.sqsh",
	} {
		if got := importName(in); got != want {
			t.Errorf("importName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFileCmdUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"import"}, {"import", "a", "b"}, {"export", "-o", "x"}} {
		var out, errOut bytes.Buffer
		if rc := run(args, &out, &errOut); rc != 2 || !strings.Contains(errOut.String(), "usage: podman-hpcd "+args[0]) {
			t.Errorf("%q: rc %d, stderr %q", args, rc, errOut.String())
		}
	}
}
