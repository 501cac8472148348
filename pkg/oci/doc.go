// Package oci generates the OCI runtime-spec of a step's container from small
// composable options, and drives the OCI runtime (crun or runc) as a binary.
// It is filled in by the container issue.
package oci
