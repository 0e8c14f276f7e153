// Package engine is layerbridge's access to the Docker Engine API: it
// chooses the daemon's endpoint as the docker CLI does (--docker-host,
// DOCKER_HOST, the current context, TLS files), builds the client, pings
// and probes the daemon (DaemonInfo: its version and image store, and
// whether it is Docker Desktop's, rootless or on another host), and turns
// the client's errors into the typed errors callers branch on
// (unreachable, permission, API version, no such image). It also adapts
// the daemon's container list (Containers: each running container's
// names, networks, aliases and published ports) for address detection,
// which package reach does.
//
// It reads no flags and no environment variables itself: callers pass the
// flag's value, getenv and the configuration directory. It imports nothing
// of this module: dockersave, reach, doctor, sidecar and the command
// depend on it.
package engine
