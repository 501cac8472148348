package oci

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWithDevices(t *testing.T) {
	t.Parallel()
	major, minor := int64(195), int64(0)
	d := specs.LinuxDevice{Path: "/dev/nvidia0", Type: "c", Major: major, Minor: minor}
	r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"}
	s, err := NewSpec(WithDevices([]specs.LinuxDevice{d}, []specs.LinuxDeviceCgroup{r}), WithDevices(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/nvidia0" || len(s.Linux.Resources.Devices) != 1 || !s.Linux.Resources.Devices[0].Allow {
		t.Errorf("devices %+v resources %+v", s.Linux.Devices, s.Linux.Resources)
	}
	if s, _ := NewSpec(WithDevices(nil, nil)); s.Linux.Resources != nil {
		t.Error("no rules made resources")
	}
	for _, bad := range []specs.LinuxDevice{{Path: "dev/x", Type: "c"}, {Path: "/dev/x", Type: "z"}} {
		if _, err := NewSpec(WithDevices([]specs.LinuxDevice{bad}, nil)); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
