// Package mediatype is the one list of the image media types layerbridge
// accepts besides the OCI ones (the Docker image manifest v2 schema 2 types
// that docker save and registries still produce), and the tests of which
// kind of blob a media type names. It depends only on the OCI image spec.
package mediatype
