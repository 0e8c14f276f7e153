package harness

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/moby/moby/api/types/jsonstream"
)

// streamMessage is one message of the Engine API's progress streams (image
// build, image load) as moby defines it, plus the top-level "error" text
// that daemons send beside (older ones: instead of) errorDetail.
type streamMessage struct {
	jsonstream.Message
	ErrorText string `json:"error,omitempty"`
}

// err is the daemon's error in m, or nil.
func (m streamMessage) err() error {
	if m.Error != nil && m.Error.Message != "" {
		return m.Error
	}
	if m.ErrorText != "" {
		return errors.New(m.ErrorText)
	}
	return nil
}

// ReadJSONMessages reads a progress stream to its end, handing each message
// to each (when not nil), and returns the first error the daemon reported
// in it, or why the stream could not be read.
func ReadJSONMessages(r io.Reader, each func(jsonstream.Message)) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	for {
		var m streamMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the daemon's answer: %w", err)
		}
		if err := m.err(); err != nil {
			return err
		}
		if each != nil {
			each(m.Message)
		}
	}
}
