package dockersave

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestCappedReader(t *testing.T) {
	for _, tt := range []struct {
		size, limit int64
		wantErr     bool
	}{
		{10, 10, false},
		{11, 10, true},
		{0, 0, false},
		{1 << 20, 1 << 19, true},
	} {
		r := &cappedReader{r: bytes.NewReader(make([]byte, tt.size)), limit: tt.limit}
		n, err := io.Copy(io.Discard, r)
		if tt.wantErr != errors.Is(err, ErrTooLarge) {
			t.Errorf("%d bytes through a cap of %d: err %v", tt.size, tt.limit, err)
		}
		if n > tt.limit+1 {
			t.Errorf("%d bytes through a cap of %d: read %d", tt.size, tt.limit, n)
		}
	}
	if got := inflationLimit(1 << 30); got != (1<<30)*maxDecompressionRatio {
		t.Errorf("inflationLimit(1 GiB) = %d", got)
	}
	if got := inflationLimit(10); got != minDecompressedLimit {
		t.Errorf("inflationLimit(10) = %d, want the floor", got)
	}
}
