package dockersave

import "github.com/layerbridge/layerbridge/imageref"

// SourceKind says where an image is read from: the transports of
// imageref, which parses every reference (Load takes its syntax).
type SourceKind = imageref.Kind

// The four sources.
const (
	SourceDaemon        = imageref.Daemon
	SourceDockerArchive = imageref.DockerArchive
	SourceOCIArchive    = imageref.OCIArchive
	SourceOCILayout     = imageref.OCILayout
)

// Ref is a parsed image reference (imageref.Parse).
type Ref = imageref.Ref
