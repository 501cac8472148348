package hooks

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	t.Parallel()
	image := []string{"PATH=/usr/bin:/bin", "FOO=image", "LD_LIBRARY_PATH=/usr/local/cuda/lib64"}
	got := MergeEnv(image,
		[]string{"LD_LIBRARY_PATH=/.podman-hpc/gpu/lib", "NEW=1"},
		[]string{"FOO=module", "LD_LIBRARY_PATH=/.podman-hpc/mpi/lib", "PATH=/opt/bin", "bad", "=x"})
	want := []string{"PATH=/opt/bin:/usr/bin:/bin", "FOO=module",
		"LD_LIBRARY_PATH=/.podman-hpc/mpi/lib:/.podman-hpc/gpu/lib:/usr/local/cuda/lib64", "NEW=1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if image[1] != "FOO=image" {
		t.Error("MergeEnv changed the image's slice")
	}
	if got := MergeEnv(nil, []string{"LD_LIBRARY_PATH=/a"}); !reflect.DeepEqual(got, []string{"LD_LIBRARY_PATH=/a"}) {
		t.Errorf("no image value: %q", got)
	}
}

type fakeModule struct {
	name  string
	optIn bool
}

func (f fakeModule) Name() string { return f.name }
func (f fakeModule) OptIn() bool  { return f.optIn }
func (f fakeModule) Apply(context.Context, Request) (Result, error) {
	return Result{}, nil
}

func TestResolve(t *testing.T) {
	t.Parallel()
	enabled := []Module{fakeModule{name: "gpu"}, fakeModule{name: "ib"}, fakeModule{name: "mpi", optIn: true}, fakeModule{name: "pmi"}}
	hookNames := []string{"01-marker", "nvidia"}
	for _, tc := range []struct {
		list, modules, names, err string
	}{
		{"", "gpu,ib,pmi", "gpu,ib,pmi", ""},
		{"mpi", "gpu,ib,mpi,pmi", "gpu,ib,mpi,pmi", ""},
		{" mpi , no-gpu,01-marker", "ib,mpi,pmi", "01-marker,ib,mpi,pmi", ""},
		{"none,mpi", "mpi", "mpi", ""},
		{"none", "", "", ""},
		{"no-mpi", "gpu,ib,pmi", "gpu,ib,pmi", ""},
		{"bogus", "", "", `unknown hook "bogus" (this node offers: 01-marker, gpu, ib, mpi, nvidia, pmi)`},
		{"no-bogus", "", "", `unknown hook "bogus"`},
	} {
		mods, names, err := Resolve(tc.list, enabled, hookNames)
		if tc.err != "" {
			if !errors.Is(err, ErrUnknownHook) || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "--container-hooks: ") {
				t.Errorf("%q: err = %v, want %q", tc.list, err, tc.err)
			}
			continue
		}
		var got []string
		for _, m := range mods {
			got = append(got, m.Name())
		}
		if err != nil || strings.Join(got, ",") != tc.modules || strings.Join(names, ",") != tc.names {
			t.Errorf("%q: modules %v names %v (%v), want %s / %s", tc.list, got, names, err, tc.modules, tc.names)
		}
	}
	// A node with no module enabled offers only its hook files.
	if _, _, err := Resolve("gpu", nil, nil); !errors.Is(err, ErrUnknownHook) {
		t.Errorf("gpu not enabled: err = %v", err)
	}
}
