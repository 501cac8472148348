package hooks

import (
	"context"
	"fmt"

	"github.com/podman-hpc/podman-hpc/pkg/devices"
)

// IB gives the container the node's RDMA devices (/dev/infiniband: uverbs,
// rdma_cm, umad, issm) and the host's verbs provider configuration
// (/etc/libibverbs.d, read-only); the provider libraries are the image's.
// A node without /dev/infiniband gets nothing.
type IB struct{}

// Name implements Module.
func (IB) Name() string { return "ib" }

// Apply implements Module.
func (IB) Apply(ctx context.Context, r Request) (Result, error) {
	nodes, config := devices.InfinibandDevices(r.HostRoot)
	var res Result
	if err := deviceResult(&res, r.HostRoot, nodes); err != nil {
		return Result{}, fmt.Errorf("ib: %w", err)
	}
	if len(nodes) > 0 && config != "" {
		res.Mounts = append(res.Mounts, bindRO(r.HostRoot, config, config))
	}
	res.Summary = fmt.Sprintf("%d device nodes", len(res.Devices))
	return res, nil
}
