package harness

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/jsonstream"
)

func TestReadJSONMessages(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
		wantLines         int
	}{
		{"output only", `{"stream":"Loaded image: a:1\n"}{"stream":"x"}`, "", 2},
		{"errorDetail", `{"stream":"a"}{"errorDetail":{"message":"no space left"},"error":"no space left"}{"stream":"b"}`, "no space left", 1},
		{"error alone", `{"error":"refused"}`, "refused", 0},
		{"garbage", `{"stream":"a"}<html>`, "reading the daemon's answer", 1},
		{"empty", ``, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := 0
			err := ReadJSONMessages(strings.NewReader(tc.in), func(m jsonstream.Message) {
				if m.Stream != "" {
					lines++
				}
			})
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			if lines != tc.wantLines {
				t.Errorf("%d lines handed on, want %d", lines, tc.wantLines)
			}
		})
	}
}
