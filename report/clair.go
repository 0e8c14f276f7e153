package report

import (
	"errors"
	"io"
)

// renderClair writes Clair's own response body byte for byte: no
// re-encoding, no added newline, ignore rules and normalisation not applied.
func renderClair(w io.Writer, r *Report, _ Options) error {
	if len(r.Raw) == 0 {
		return errors.New("the report holds no Clair response body (Report.Raw is empty)")
	}
	_, err := w.Write(r.Raw)
	return err
}
