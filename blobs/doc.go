// Package blobs says what holds an image's blobs while layerbridge serves
// them: an Opener hands out a Blob by digest, which is the blob's bytes at
// random access and its size. The store opens its files this way, and a
// source whose blobs stay where they are (containerd's content store, an
// export still being written) implements Opener too, so the layer server and
// the registry view serve every image alike.
//
// It is a leaf: it imports nothing of this module.
package blobs
