package node

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// umounted returns the destinations of the user's umount:/DST entries:
// the mounts the defaults would put there (the home, the admin's mounts)
// are left out.
func umounted(mounts []wire.UserMount) map[string]bool {
	drop := map[string]bool{}
	for _, um := range mounts {
		if um.IsUmount() {
			drop[um.Dst] = true
		}
	}
	return drop
}

// tmpfsMount is a tmpfs:/DST entry's mount: a fresh tmpfs the runtime
// mounts, nosuid and nodev, owned by the job user (root of its user
// namespace under --container-remap-root, where the runtime mounts it),
// with the user's tmpfs options (wire.TmpfsOption) after the defaults, so
// that a mode= of theirs wins.
func tmpfsMount(um wire.UserMount, uid, gid uint32, remapped bool) specs.Mount {
	if remapped {
		uid, gid = 0, 0
	}
	opts := []string{"nosuid", "nodev", "mode=755", fmt.Sprintf("uid=%d", uid), fmt.Sprintf("gid=%d", gid)}
	return specs.Mount{Destination: um.Dst, Type: "tmpfs", Source: "tmpfs", Options: append(opts, um.Options...)}
}

// inUserOrder puts the user's tmpfs mounts among their binds in the order
// they were given (a bind under a tmpfs of theirs needs the tmpfs first):
// staged holds the binds the home (when bound) first, then the user's
// binds in order, then the others (stageAsUser keeps the order it is
// given).
func inUserOrder(staged []specs.Mount, home bool, mounts []wire.UserMount, uid, gid uint32, remapped bool) []specs.Mount {
	out := make([]specs.Mount, 0, len(staged)+len(mounts))
	i := 0
	if home && len(staged) > 0 {
		out, i = append(out, staged[0]), 1
	}
	for _, um := range mounts {
		switch {
		case um.IsUmount():
		case um.IsTmpfs():
			out = append(out, tmpfsMount(um, uid, gid, remapped))
		case i < len(staged):
			out, i = append(out, staged[i]), i+1
		}
	}
	return append(out, staged[i:]...)
}

// propagation returns the propagation types the user's binds ask for
// ([r]private, [r]shared, [r]slave, [r]unbindable), which the daemon sets
// once the container runs (oci.SetPropagation).
func propagation(mounts []wire.UserMount) []oci.Propagation {
	var out []oci.Propagation
	for _, um := range mounts {
		if um.IsTmpfs() || um.IsUmount() {
			continue
		}
		if p := oci.PropagationOptions(um.Options); len(p) > 0 {
			out = append(out, oci.Propagation{Dst: um.Dst, Options: p})
		}
	}
	return out
}

// ignoredWhenAttaching returns the options of req, a step attaching to a
// container made by an earlier step from made, that apply only when a
// container is made: its mounts, another image, remap-root or the
// entrypoint where it has none. pyxis's words ("ignoring
// --container-mounts"), which scripts look for.
func ignoredWhenAttaching(req, made *wire.ContainerRequest) []string {
	var out []string
	if len(req.Mounts) > 0 {
		out = append(out, "--container-mounts")
	}
	if req.Image != "" && req.Image != made.Image {
		out = append(out, "--container-image="+req.Image)
	}
	if req.RemapRoot && !made.RemapRoot {
		out = append(out, "--container-remap-root")
	}
	if req.Entrypoint && !made.Entrypoint {
		out = append(out, "--container-entrypoint")
	}
	return out
}
