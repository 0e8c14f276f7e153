package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// samples are the values of one measurement over the runs.
type samples []float64

func (s samples) median() float64 {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

func (s samples) min() float64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Min(s)
}

func (s samples) max() float64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Max(s)
}

// unit formats a value.
type unit struct {
	format func(float64) string
}

var (
	unitSeconds = unit{func(v float64) string { return fmt.Sprintf("%.2f s", v) }}
	unitMillis  = unit{func(v float64) string { return fmt.Sprintf("%.0f ms", v*1000) }}
	unitMiB     = unit{func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }}
	unitGiBps   = unit{func(v float64) string { return fmt.Sprintf("%.2f GiB/s", v) }}
	unitRatio   = unit{func(v float64) string { return fmt.Sprintf("%.2fx", v) }}
	unitCount   = unit{func(v float64) string { return fmt.Sprintf("%.0f", v) }}
	unitCores   = unit{func(v float64) string { return fmt.Sprintf("%.2f", v) }}
)

// target is a goal from issue 8 or 18, checked on one statistic of a row.
type target struct {
	text  string                // as printed, e.g. "<= 1.15x"
	stat  func(samples) float64 // which statistic is checked (median, max)
	check func(float64) bool
}

func atMost(limit float64, text string, stat func(samples) float64) *target {
	return &target{text: text, stat: stat, check: func(v float64) bool { return v <= limit }}
}

func atLeast(limit float64, text string, stat func(samples) float64) *target {
	return &target{text: text, stat: stat, check: func(v float64) bool { return v >= limit }}
}

// row is one line of the table.
type row struct {
	measure string
	image   string
	unit    unit
	values  samples
	target  *target
	// fail forces MISS (for example: a download was wrong), with why.
	fail string
}

// verdict is "", "PASS" or "MISS".
func (r row) verdict() string {
	if r.target == nil && r.fail == "" {
		return ""
	}
	if r.fail != "" || len(r.values) == 0 || !r.target.check(r.target.stat(r.values)) {
		return "MISS"
	}
	return "PASS"
}

// table is the single table make bench prints.
type table struct {
	title  []string
	rows   []row
	footer []string
}

func (t *table) add(r row) { t.rows = append(t.rows, r) }

func (t *table) section(name string) { t.rows = append(t.rows, row{measure: name}) }

func (t *table) render(w io.Writer) error {
	for _, l := range t.title {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
	header := []string{"MEASURE", "IMAGE", "MEDIAN", "MIN", "MAX", "N", "TARGET", "RESULT"}
	var lines [][]string
	pass, miss := 0, 0
	for _, r := range t.rows {
		if r.unit.format == nil {
			lines = append(lines, nil)
			continue
		}
		v := r.verdict()
		switch v {
		case "PASS":
			pass++
		case "MISS":
			miss++
		}
		tgt := ""
		if r.target != nil {
			tgt = r.target.text
		}
		if r.fail != "" {
			v += " (" + r.fail + ")"
		}
		mid, lo, hi := "-", "-", "-"
		if len(r.values) > 0 {
			mid, lo, hi = r.unit.format(r.values.median()), r.unit.format(r.values.min()), r.unit.format(r.values.max())
		}
		lines = append(lines, []string{"  " + r.measure, r.image, mid, lo, hi, fmt.Sprint(len(r.values)), tgt, v})
	}
	width := make([]int, len(header))
	for _, l := range append([][]string{header}, lines...) {
		for i, c := range l {
			width[i] = max(width[i], len(c))
		}
	}
	// Numbers are right-aligned, text left-aligned; section titles span
	// the whole line.
	numeric := []bool{false, false, true, true, true, true, false, false}
	format := func(cells []string) string {
		var b strings.Builder
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-len(c))
			if numeric[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
			b.WriteString("  ")
		}
		return strings.TrimRight(b.String(), " ")
	}
	fmt.Fprintln(w, format(header))
	for i, l := range lines {
		if l == nil {
			fmt.Fprintln(w, strings.ToUpper(t.rows[i].measure))
			continue
		}
		fmt.Fprintln(w, format(l))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "targets: %d PASS, %d MISS\n", pass, miss)
	for _, l := range t.footer {
		fmt.Fprintln(w, l)
	}
	return nil
}
