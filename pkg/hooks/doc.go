// Package hooks gives a step's container what the node offers beyond the
// image: the OCI hooks of podman's hooks.d directories, read and matched
// with podman's own code (go.podman.io/common/pkg/hooks) and run by the OCI
// runtime, timed; and the built-in modules (gpu, ib, mpi, pmi), which add
// mounts, devices and environment for the tasks.
package hooks
