// Package devices discovers GPUs, InfiniBand and Cray network devices on a
// node, honouring the devices Slurm allocated to the job. It is filled in by
// the hooks issue.
package devices
