// Package kubernetes holds the tests of the Kubernetes manifests beside it
// (a module of its own, so that neither layerbridge nor its integration
// module depends on k8s.io/api): every manifest decodes strictly into the
// Kubernetes API types, every flag the DaemonSet passes is one the built
// binary's serve accepts, and the pod runs with least privilege.
package kubernetes
