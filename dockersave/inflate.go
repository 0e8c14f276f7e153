package dockersave

import "io"

// cappedReader fails with errDecompressedTooLarge once more than limit bytes
// were read through it, instead of letting a bomb fill the disk.
type cappedReader struct {
	r     io.Reader
	limit int64
	n     int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n > c.limit {
		return 0, errDecompressedTooLarge
	}
	if rest := c.limit + 1 - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return n, errDecompressedTooLarge
	}
	return n, err
}
