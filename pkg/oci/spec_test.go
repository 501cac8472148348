package oci

import (
	"slices"
	"sort"
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

// A private IPC namespace gets its own /dev/shm and /dev/mqueue, in place
// of the host's /dev/shm, and the mqueue that a remapped root dropped;
// a user's own later bind on /dev/shm stays.
func TestWithPrivateIPC(t *testing.T) {
	t.Parallel()
	user := BindMount("/scratch/shm", "/dev/shm")
	for _, remap := range []bool{false, true} {
		opts := []SpecOpt{WithNamespaces(specs.IPCNamespace), WithMounts(user)}
		if remap {
			opts = append(opts, WithRemappedRoot(1000, 1000))
		}
		s, err := NewSpec(append(opts, WithPrivateIPC())...)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range s.Mounts {
			if m.Destination == "/dev/shm" || m.Destination == "/dev/mqueue" {
				got = append(got, m.Destination+"="+m.Type+":"+m.Source)
			}
		}
		want := []string{"/dev/mqueue=mqueue:mqueue", "/dev/shm=tmpfs:shm", "/dev/shm=bind:/scratch/shm"}
		if len(got) == len(want) {
			sort.Strings(got[:2]) // the defaults' order, or after /dev
		}
		if len(got) != len(want) {
			t.Fatalf("remap %v: %q, want %q", remap, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("remap %v: %q, want %q", remap, got, want)
			}
		}
		if dev := slicesIndex(s.Mounts, "/dev"); dev < 0 || slicesIndex(s.Mounts, "/dev/shm") < dev {
			t.Errorf("remap %v: /dev/shm before /dev: %+v", remap, s.Mounts)
		}
	}
}

func slicesIndex(mounts []specs.Mount, dst string) int {
	for i, m := range mounts {
		if m.Destination == dst {
			return i
		}
	}
	return -1
}

// Both modes map one id alone, run the process as it inside with no
// supplementary group (unmapped there), and bind the node's /dev/mqueue
// in place of a new mqueue mount unless the container has its own IPC
// namespace (a user namespace may not mount the host's).
func TestWithSingleIDUserNamespace(t *testing.T) {
	hostHasMqueue = func() bool { return true }
	t.Cleanup(func() { hostHasMqueue = hostHasMqueueFS })
	for _, tc := range []struct {
		name         string
		opt          SpecOpt
		inUID, inGID uint32
	}{
		{"plain", WithUserNamespace(1001, 1002), 1001, 1002},
		{"remap-root", WithRemappedRoot(1001, 1002), 0, 0},
	} {
		for _, ipc := range []bool{false, true} {
			opts := []SpecOpt{WithUser(1001, 1002, []uint32{5, 6})}
			if ipc {
				opts = append(opts, WithNamespaces(specs.IPCNamespace))
			}
			s, err := NewSpec(append(opts, tc.opt)...)
			if err != nil {
				t.Fatal(err)
			}
			if s.Linux.Namespaces[0].Type != specs.UserNamespace {
				t.Errorf("%s: user namespace not first: %+v", tc.name, s.Linux.Namespaces)
			}
			wantU := []specs.LinuxIDMapping{{ContainerID: tc.inUID, HostID: 1001, Size: 1}}
			wantG := []specs.LinuxIDMapping{{ContainerID: tc.inGID, HostID: 1002, Size: 1}}
			if !slices.Equal(s.Linux.UIDMappings, wantU) || !slices.Equal(s.Linux.GIDMappings, wantG) {
				t.Errorf("%s: mappings %+v %+v, want %+v %+v", tc.name, s.Linux.UIDMappings, s.Linux.GIDMappings, wantU, wantG)
			}
			if u := s.Process.User; u.UID != tc.inUID || u.GID != tc.inGID || len(u.AdditionalGids) != 0 {
				t.Errorf("%s: process user %+v", tc.name, u)
			}
			mq := slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Type == "mqueue" })
			bound := slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool {
				return m.Destination == "/dev/mqueue" && m.Type == "bind" && m.Source == "/dev/mqueue"
			})
			if mq != ipc || bound == ipc {
				t.Errorf("%s, private IPC %v: mqueue mounted %v, the node's bound %v", tc.name, ipc, mq, bound)
			}
		}
	}
}
