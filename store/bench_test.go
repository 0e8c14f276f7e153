package store

import (
	"fmt"
	"testing"
)

// BenchmarkTouch is the usage mark a warm load adds: one utimensat on the
// image's lock file.
func BenchmarkTouch(b *testing.B) {
	s := openTestStore(b)
	img := commitImage(b, s, "app:1", randomLayer(b, 4<<10))
	for b.Loop() {
		if err := s.Touch(img); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPruneWithinLimit is what the sidecar pays after each scan when
// the store is under its limit: read index.json, list blobs/, stat each
// image's usage mark, clean up; 200 stored images.
func BenchmarkPruneWithinLimit(b *testing.B) {
	s := openTestStore(b)
	for i := range 200 {
		commitImage(b, s, fmt.Sprintf("other:%d", i), []byte(fmt.Sprint(i)))
	}
	for b.Loop() {
		res, err := s.Prune(b.Context(), 1<<40)
		if err != nil || len(res.Evicted) != 0 {
			b.Fatalf("%+v, %v", res, err)
		}
	}
}
