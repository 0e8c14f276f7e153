// Package directio writes and reads files with direct I/O (O_DIRECT), for
// the staging files of large blobs. A Writer runs a pipeline that reads,
// hashes and writes on different goroutines: the page cache is bypassed and
// hashing gets a core of its own. A Reader reads such a file back (a scan's
// layers, which Clair downloads while they are staged) without filling the
// page cache. On file systems or systems without direct I/O, NewWriter and
// NewReader fail and the caller goes through the page cache.
package directio
