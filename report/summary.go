package report

// Summary counts a report's findings per severity. Ignored findings are
// counted apart, in Ignored, and never in Counts.
type Summary struct {
	// Counts is indexed by Severity (Counts[High] is the number of High
	// findings). Range over Severities to list it in Clair's order.
	Counts  [Defcon1 + 1]int
	Ignored int // findings moved to Report.Ignored by ignore rules
}

// Count returns the number of findings of severity s; 0 for a severity
// outside Unknown..Defcon1.
func (s Summary) Count(sev Severity) int {
	if sev < Unknown || sev > Defcon1 {
		return 0
	}
	return s.Counts[sev]
}

// Total returns the number of findings that are not ignored.
func (s Summary) Total() int {
	n := 0
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Summary counts r's findings per severity and its ignored findings. It
// counts what is in r: call Normalize and Apply first, or duplicates and
// findings an ignore rule would suppress are counted too. A finding whose
// severity is out of range is counted as Unknown.
func (r *Report) Summary() Summary {
	var s Summary
	for _, f := range r.Findings {
		sev := f.Severity
		if sev < Unknown || sev > Defcon1 {
			sev = Unknown
		}
		s.Counts[sev]++
	}
	s.Ignored = len(r.Ignored)
	return s
}

// Fails reports whether any finding that is not ignored has a severity at or
// above threshold: the --fail-on verdict. Findings in r.Ignored never count,
// so apply ignore rules before asking. Fails(Unknown) is true for any
// finding at all; an empty report never fails, even when r.Warnings say the
// vulnerability database was empty.
func (r *Report) Fails(threshold Severity) bool {
	for _, f := range r.Findings {
		if f.Severity >= threshold {
			return true
		}
	}
	return false
}
