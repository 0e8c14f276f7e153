package containerdsource

import (
	"context"
	"fmt"
	"slices"
)

// ServerInfo is what Probe learned of containerd.
type ServerInfo struct {
	Address  string
	Version  string // containerd's version, "v2.4.2"
	Revision string
	// Namespaces are the namespaces containerd has; HasNamespace says
	// whether the source's is one of them (containerd creates a namespace
	// when something is first put in it).
	Namespaces   []string
	HasNamespace bool
}

// Probe connects to containerd (if not yet connected) and asks its version
// and namespaces, for doctor and readiness checks. Errors are those of
// Load's connection: *UnreachableError, *PermissionError.
func (s *Source) Probe(ctx context.Context) (ServerInfo, error) {
	info := ServerInfo{Address: s.cfg.Address}
	b, err := s.backend()
	if err != nil {
		return info, err
	}
	v, err := b.Version(ctx)
	if err != nil {
		return info, classify(s.cfg.Address, err)
	}
	info.Version, info.Revision = v.Version, v.Revision
	nss, err := b.Namespaces(ctx)
	if err != nil {
		return info, fmt.Errorf("list containerd namespaces: %w", classify(s.cfg.Address, err))
	}
	slices.Sort(nss)
	info.Namespaces = nss
	info.HasNamespace = slices.Contains(nss, s.cfg.Namespace)
	return info, nil
}
