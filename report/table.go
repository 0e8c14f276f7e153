package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode"
)

// ANSI escapes used when Options.Color is set.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
	ansiDim    = "\x1b[2m"
)

func severityColor(s Severity) string {
	switch {
	case s >= Critical:
		return ansiBold + ansiRed
	case s == High:
		return ansiRed
	case s == Medium:
		return ansiYellow
	case s == Low:
		return ansiCyan
	default:
		return ansiDim
	}
}

// painter wraps text in colours when enabled.
type painter bool

func (p painter) paint(color, s string) string {
	if !p || color == "" {
		return s
	}
	return color + s + ansiReset
}

// renderTable writes the human report: header, warnings, summary, one
// aligned row per finding, then the ignored findings.
func renderTable(w io.Writer, r *Report, o Options) error {
	bw := bufio.NewWriter(w)
	p := painter(o.Color)

	header := [][2]string{
		{"Image", r.Image.Ref},
		{"ID", r.Image.ID},
		{"Platform", r.Image.Platform},
		{"Manifest", r.Image.ManifestDigest},
		{"Clair", clairLine(r.Clair)},
	}
	for _, h := range header {
		if h[1] != "" {
			fmt.Fprintf(bw, "%-10s%s\n", h[0]+":", clean(h[1]))
		}
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(bw)
		for _, warn := range r.Warnings {
			fmt.Fprintln(bw, p.paint(ansiBold+ansiYellow, "WARNING: "+clean(warn)))
		}
	}

	s := r.Summary()
	fmt.Fprintln(bw)
	parts := make([]string, 0, len(Severities))
	for _, sev := range Severities {
		part := fmt.Sprintf("%s: %d", sev, s.Count(sev))
		if s.Count(sev) > 0 {
			part = p.paint(severityColor(sev), part)
		}
		parts = append(parts, part)
	}
	fmt.Fprintf(bw, "Summary: %s (%s, %d ignored)\n", strings.Join(parts, ", "), plural(s.Total(), "finding"), s.Ignored)

	fmt.Fprintln(bw)
	if len(r.Findings) == 0 {
		fmt.Fprintln(bw, "No vulnerabilities found.")
	} else {
		// The severity is the last, unterminated cell: its colour codes do
		// not count towards any column width.
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VULNERABILITY\tPACKAGE\tINSTALLED\tFIXED IN\tSEVERITY")
		for _, f := range r.Findings {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n",
				clean(f.Name), clean(f.Package), clean(f.Version), orDash(f.FixedIn),
				p.paint(severityColor(f.Severity), f.Severity.String()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(bw)
	if len(r.Ignored) == 0 {
		fmt.Fprintln(bw, "Ignored: 0")
	} else {
		fmt.Fprintf(bw, "Ignored: %d (not counted above, never fail the scan)\n", len(r.Ignored))
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VULNERABILITY\tPACKAGE\tINSTALLED\tSEVERITY\tREASON")
		for _, ig := range r.Ignored {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n",
				clean(ig.Name), clean(ig.Package), clean(ig.Version), ig.Severity, orDash(ig.Reason))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func clairLine(c Clair) string {
	switch {
	case c.URL == "" && c.API == "":
		return ""
	case c.API == "":
		return c.URL
	case c.URL == "":
		return "API " + c.API
	default:
		return fmt.Sprintf("%s (API %s)", c.URL, c.API)
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func orDash(s string) string {
	if s = clean(s); s == "" {
		return "-"
	}
	return s
}

// clean makes a value safe for one terminal cell: control and format
// characters (tabs, newlines, escape sequences or bidi overrides from a
// hostile advisory) become spaces.
func clean(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.In(r, unicode.Cc, unicode.Cf) {
			return ' '
		}
		return r
	}, s))
}
