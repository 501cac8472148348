// Package hooks reads podman's hooks.d directories with podman's semantics
// and runs the built-in gpu, ib, cray-mpich and pmi modules. It is filled in
// by the hooks issue.
package hooks
