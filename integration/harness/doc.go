// Package harness starts, on loopback, the real services layerbridge is
// tested and demonstrated against, and stops and removes them afterwards:
// a throwaway PostgreSQL cluster (Postgres), an Alpine SecDB feed server
// (FeedServer), Clair v4 in combo mode built from the Go module proxy and
// configured offline (BuildClair, Clair), all three at once (Start, Stack),
// the Clair v2 stand-in (Standin), a plain static file server for layer
// files (LayerServer), and the reference findings real Clair reports for
// layers served by that plain server (ReferenceV4, ReferenceV2).
//
// For the sidecar, Clair also runs in a container (StartDocker, DockerStack):
// a static Clair (BuildStaticClair) in a FROM scratch image on a
// user-defined Docker network made for the run (Network), PostgreSQL and the
// feed server listening on that network's gateway as well, trusting only
// its subnet; with Options.Unpublished Clair publishes no port and the
// host reaches it at its address on the network, as Clair setups run it.
// Containers under test join the network (RunContainer, BuildOwnedImage);
// CreateNetworkWith makes the other kinds tests need (--internal, or a
// bridge without an address on this host). Everything it creates in Docker is labelled with the
// creating process, removed on Close, and removed by the next StartDocker
// (RemoveOrphans) if that process died first.
//
// For the engines users have beside the system's Docker daemon, it starts
// engines of its own, each in a temporary directory on a private unix
// socket, as root: a Docker Engine 29 with the containerd image store and
// BuildKit (StartDockerd: dockerd on its own containerd, the docker CLI's
// buildx plugin), a containerd alone (StartContainerd, ImportImage) and
// Podman's Docker API service (StartPodman). Clair, dockerd, containerd and
// buildx are built from the Go module proxy: each from a small module of its
// own under integration/engines/ that names its commands as tools
// (BuildClair, BuildDockerd, BuildContainerd, BuildBuildx), cached under a
// key of that module's go.mod and go.sum and the Go version. SharedEngine lets the tests
// of one process share an engine. A directory left by a killed process is
// removed by the next start, with the mounts below it and the processes
// (containerd's shims) that name it.
//
// It is built for both callers: tests (StartT and the other ...T helpers
// wrap each service with t.Context and t.Cleanup, and print Clair's log
// when a test fails) and plain programs such as cmd/demo (Start with a
// context, then Close). Every process runs in its own process group, is
// stopped when its context ends or on Close, and is killed by the kernel if
// the calling process dies first; nothing listens beyond 127.0.0.1 (but
// for the gateway of a Network made for the run), and Clair's attempts to
// reach public hosts are refused and recorded (Clair.ExternalRequests).
//
// Inputs: directories (a SecDB feed, layer files, a Docker build context)
// and the integration module's pinned Clair version. Outputs: URLs of the
// running services, timings, findings.
//
// It must not import layerbridge's product packages: it is the independent
// reference the product is checked against. Of the environment it reads
// only CI (Unavailable), Docker's DOCKER_* (DockerClient), PATH and the
// user cache directory (DefaultCacheDir); it starts nothing that outlives
// Close (containers: nothing that outlives the next StartDocker).
package harness
