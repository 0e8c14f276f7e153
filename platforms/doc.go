// Package platforms holds layerbridge's rules for image platforms
// ("os/arch[/variant]"): how --platform is parsed and written, how the
// names Docker, containerd and archives use for one platform are
// normalized, which platform satisfies a request, and which is the host's.
// The loader, the store and the commands all use these rules, so an image
// chosen for a platform is found again under it.
package platforms
