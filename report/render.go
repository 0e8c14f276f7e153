package report

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// DefaultFormat is the format used when the user names none.
const DefaultFormat = "table"

// renderers maps each format to its renderer, in the order Formats lists them.
var renderers = []struct {
	name   string
	render func(w io.Writer, r *Report, o Options) error
}{
	{"table", renderTable},
	{"json", renderJSON},
	{"clair", renderClair},
	{"html", renderHTML},
	{"sarif", renderSARIF},
	{"junit", renderJUnit},
	{"cyclonedx", renderCycloneDX},
}

// Formats returns the names Render accepts, the default first. The slice is
// the caller's to keep.
func Formats() []string {
	names := make([]string, len(renderers))
	for i, rd := range renderers {
		names[i] = rd.name
	}
	return names
}

// ErrUnknownFormat is wrapped by the error for a format name that is not one
// of Formats. Check with errors.Is: it is a usage error, found before any
// scan if the caller calls CheckFormat early.
var ErrUnknownFormat = errors.New("unknown report format")

// CheckFormat returns nil if Render accepts format, else an error wrapping
// ErrUnknownFormat that lists the accepted names. Names are exact and
// lowercase.
func CheckFormat(format string) error {
	for _, rd := range renderers {
		if rd.name == format {
			return nil
		}
	}
	return fmt.Errorf("%w %q (want one of %s)", ErrUnknownFormat, format, strings.Join(Formats(), ", "))
}

// Options tunes the renderers. The zero value is what a user who passed no
// flags gets.
type Options struct {
	// FailOn is the --fail-on threshold, nil when the user set none.
	// junit: findings at or above it are failures, those below pass; nil
	// fails none, so that the failures agree with the exit code (3 exactly
	// when there are some).
	// sarif: findings at or above it have level "error", those below at most
	// "warning"; nil maps levels from severity alone. Other formats ignore
	// it: the exit code is the caller's job (Report.Fails).
	FailOn *Severity
	// Color adds ANSI colours to the table format. Off by default: set it
	// only when the output is a terminal and the user did not opt out
	// (NO_COLOR); it never touches other formats.
	Color bool
	// ToolVersion is layerbridge's version, written into the sarif driver,
	// the html footer and the cyclonedx tools; empty leaves it out.
	ToolVersion string
	// Time is when the report is rendered: cyclonedx writes it as the BOM's
	// metadata timestamp. The zero value leaves the timestamp out, which
	// makes the output depend on the report alone (reproducible). Other
	// formats ignore it.
	Time time.Time
	// Packages adds a "packages" array (Report.Packages) to the json
	// format, for a reader that renders cyclonedx from it later (the
	// sidecar's API). Off by default, so that json keeps its shape. Other
	// formats ignore it: cyclonedx always lists the packages.
	Packages bool
}

// Render writes r to w in format with default Options. See Options.Render.
func Render(w io.Writer, format string, r *Report) error {
	return Options{}.Render(w, format, r)
}

// Render writes r to w in format, one of Formats. It renders r as it is:
// call r.Normalize and apply ignore rules first. w receives partial output
// if rendering fails midway, so write to a temporary file and rename it.
// The clair format fails when r.Raw is empty.
func (o Options) Render(w io.Writer, format string, r *Report) error {
	if err := CheckFormat(format); err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("render %s: no report", format)
	}
	for _, rd := range renderers {
		if rd.name == format {
			if err := rd.render(w, r, o); err != nil {
				return fmt.Errorf("render %s: %w", format, err)
			}
		}
	}
	return nil
}

// failing reports whether f is at or above o's threshold; none is when
// there is no threshold.
func (o Options) failing(f Finding) bool {
	return o.FailOn != nil && f.Severity >= *o.FailOn
}
