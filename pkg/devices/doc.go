// Package devices discovers what a node offers containers: GPU and
// InfiniBand device nodes, the GPU driver's user-space files found through
// the linker cache, and shared libraries' sonames and versions. It honours
// the GPUs Slurm allocated to the step.
//
// Every function takes the tree to look in as root ("/" on a node, a fake
// tree in tests); paths it returns are absolute paths inside that tree.
package devices
