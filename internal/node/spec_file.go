package node

import (
	"encoding/json"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// writeSpec writes the container's spec for the runtime, compact: only
// programs read it, and indenting was a tenth of its encoding's cost.
func writeSpec(path string, s *specs.Spec) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode spec: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	return nil
}
