package harness

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// JSONMessage is one message of the Engine API's progress streams (image
// build, image load): a line of output, an error, or auxiliary data.
type JSONMessage struct {
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux json.RawMessage `json:"aux"`
}

// err is the daemon's error in m, or nil.
func (m JSONMessage) err() error {
	if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
		return errors.New(m.ErrorDetail.Message)
	}
	if m.Error != "" {
		return errors.New(m.Error)
	}
	return nil
}

// ReadJSONMessages reads a progress stream to its end, handing each message
// to each (when not nil), and returns the first error the daemon reported
// in it, or why the stream could not be read.
func ReadJSONMessages(r io.Reader, each func(JSONMessage)) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	for {
		var m JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the daemon's answer: %w", err)
		}
		if err := m.err(); err != nil {
			return err
		}
		if each != nil {
			each(m)
		}
	}
}
