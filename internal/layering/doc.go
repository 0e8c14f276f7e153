// Package layering holds no code: its test is the one table of the
// dependency rules between the packages of the module, checked against
// their imports (README's Development section draws the rows). Each
// package may import only the packages its rule names:
//
//   - cmd/layerbridge alone reads flags and the environment, and wires the
//     rest; scan, sidecar and doctor orchestrate below it.
//   - dockersave turns an image source into a verified image with imageref
//     (references), store (the cache), engine (the Docker Engine API),
//     platforms, internal/directio and internal/mediatype.
//   - containerdsource, the containerd: source (a containerd image as a
//     verified dockersave.Image, its blobs read in place), imports
//     dockersave (Source, Image, Measure, Verify), store (notes), blobs,
//     imageref, platforms, internal/mediatype and containerd's Go client;
//     dockersave never imports it: the command registers it with
//     dockersave.WithSource.
//   - store imports only platforms and blobs: never dockersave, engine or
//     bridge.
//   - blobs, what opens an image's blobs for serving, is a leaf: the store,
//     dockersave's sources, bridge, sidecar and doctor share it.
//   - engine imports nothing of the module (it is the Docker Engine API);
//     reach (how Clair and layerbridge reach each other: the address to
//     advertise, Clair's container behind a name only Docker's DNS knows)
//     imports only engine and internal/didyoumean; scan never needs either,
//     and doctor and the command use both.
//   - bridge imports only blobs and internal/mediatype: never the Clair
//     clients, report, dockersave, store, engine or reach.
//   - clairv4 and clairv2 import only report and internal/clairhttp: never
//     dockersave, store, engine or bridge, nor each other.
//   - report imports only imageref; imageref, platforms and the internal
//     packages import nothing of the module but what their rule names.
//
// The "never" rules hold for indirect dependencies too: the test checks
// them against each package's whole dependency graph.
package layering
