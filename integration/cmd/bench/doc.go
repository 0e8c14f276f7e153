// Command bench is what `make bench` runs (issues 8 and 18): it measures what
// getting a local image to Clair costs with layerbridge against the Docker
// daemon's own export, and prints one table with the targets and a
// PASS or MISS for each.
//
// It builds the benchmark images in the local daemon once (FROM scratch,
// pseudo-random incompressible layers from a fixed seed, loaded with
// ImageLoad from a generated docker-save archive and labelled
// io.layerbridge.bench; a later run finds them again by their image ID,
// which the seed determines): 1 x 1 GiB, 10 x 100 MiB and 125 x 1 MiB
// (Docker 20.10 refuses more than 125 layers). Then, for --runs rounds, each
// round measuring every image and contender once in a rotated order so that
// drift spreads evenly:
//
//   - floor: docker save through the Engine API, read to discard;
//   - naive: docker save into a file, then untar it (no fsync);
//   - cold: `layerbridge inspect --cache-dir EMPTY IMAGE`, the built binary
//     run as a user would, timed fork to reap, with wait4's peak RSS;
//   - warm: the same with the image already stored (it must write nothing);
//   - optionally the same for a --baseline binary, for before/after.
//
// With --page-cache both (or drop) the page cache is dropped before each
// export (root only), and every measurement is preceded by sync. It then
// serves the stored layers from the bridge (bridge.New, in this process) on
// loopback: one client reading the 1 GiB layer, 64 concurrent clients each
// reading a 100 MiB layer, every body re-hashed. Last, it starts
// PostgreSQL, a SecDB feed and Clair v4 with the harness and, per round,
// loads a new image (the demo root file system as a base layer and
// --scan-layers layers of --scan-size random bytes, never seen by Clair),
// then measures the floor for it, its first scan with an empty cache
// (scan.Run; its overlapping stages from scan.Result.Timings) and a re-scan
// with another empty cache, which must not export (Clair has indexed the
// image: scan.Result.AlreadyIndexed, no layer fetched) and must find the
// same. The floor runs before the scans in even rounds, after them in odd
// ones. Unless --skip-bound, each round then loads another new image for
// the bound of a first scan: its floor, and docker save read to discard
// while Clair indexes the same layers from a cache filled beforehand, from
// the export's first byte on (what a client costing nothing would reach).
// With --scan-engine docker29 the scanned images live on a Docker
// Engine 29 with the containerd image store, which the harness builds and
// starts as the integration tests do. --scan-log FILE appends each scan's
// debug log to FILE. With --profile DIR it also writes pprof profiles of an
// in-process cold export, of serving and of the first scan.
//
// Run it from the integration module directory:
//
//	go run ./cmd/bench --layerbridge ../bin/layerbridge
//
// Progress goes to stderr, the table to stdout. Exit status: 0 when it
// measured (whatever the verdicts), 1 when it failed, 2 for a usage error,
// 130 when interrupted. --remove-images removes every benchmark image.
//
// Besides the harness it links dockersave, bridge and scan, the product
// packages it measures in-process; it must not change what it measures:
// no options that a user's layerbridge would not have.
package main
