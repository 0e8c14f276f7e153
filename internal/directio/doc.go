// Package directio writes files with direct I/O (O_DIRECT) through a
// pipeline that reads, hashes and writes on different goroutines (Writer),
// for the staging files of large blobs: the page cache is bypassed and
// hashing gets a core of its own. On file systems or systems without direct
// I/O, NewWriter fails and the caller writes through the page cache.
// NewPageCacheWriter runs the same pipeline through the page cache, for
// files read again at once (a scan's layers, which Clair downloads as soon
// as they are staged).
package directio
