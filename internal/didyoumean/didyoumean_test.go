package didyoumean

import (
	"slices"
	"testing"
)

func TestClosest(t *testing.T) {
	containers := []string{"clair", "clair-db", "clair-db", "layerbridge", "postgres", "3261780aba10"}
	for _, tc := range []struct {
		s    string
		want []string
	}{
		{"clari", []string{"clair"}},       // two substitutions
		{"clairr", []string{"clair"}},      // one insertion
		{"clair-bd", []string{"clair-db"}}, // duplicates once
		{"cl", []string{"clair", "clair-db"}},
		{"layerbrige", []string{"layerbridge"}},
		{"redis", nil},
		{"clair", []string{"clair-db"}}, // not itself
		{"", nil},
	} {
		if got := Closest(tc.s, containers); !slices.Equal(got, tc.want) {
			t.Errorf("Closest(%q) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"scan", "scan", 0}, {"scna", "scan", 2}, {"", "serve", 5}, {"kitten", "sitting", 3},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Distance(tc.b, tc.a); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
}
