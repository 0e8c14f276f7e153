package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/term"

	"github.com/layerbridge/layerbridge/bridge"
	"github.com/layerbridge/layerbridge/dockersave"
	"github.com/layerbridge/layerbridge/imageref"
	"github.com/layerbridge/layerbridge/scan"
)

// display shows a command's stages on a terminal (stderr), one at a time:
// the running stage is one line, redrawn in place (carriage return, erase
// to the end of the line, never wider than the terminal) as it progresses
// and at least every refresh; when the stage ends the line is replaced by
// its summary and a newline. So the scrollback holds one plain summary line
// per stage, and nothing else of the display. Log lines written through it
// (Write) go above the running line.
//
// One line at a time needs two escape sequences, and the log lines must go
// through the same writer: a terminal library (mpb, progressbar) would
// bring a renderer of its own and four to seven modules for that.
type display struct {
	w    io.Writer
	cols func() int // terminal width; <= 0 when unknown

	mu      sync.Mutex
	stage   scan.Stage // the running stage, "" when none
	label   string     // the image
	source  imageref.Kind
	start   time.Time
	drawn   bool // a stage line is on the screen
	lastPct int  // the percentage last drawn, -1 for none
	last    time.Time

	read, expected int64 // exporting
	layers         int   // of the image, once loaded
	fetched        map[digest.Digest]bool

	stop chan struct{}
	done chan struct{}
}

// refresh is how often a running stage is redrawn (its elapsed time and
// rate move without events); a new export percentage is drawn at once.
const refresh = 200 * time.Millisecond

// newDisplay returns a display drawing on w, a terminal cols wide.
func newDisplay(w io.Writer, cols func() int) *display {
	d := &display{w: w, cols: cols, lastPct: -1, stop: make(chan struct{}), done: make(chan struct{})}
	go d.tick()
	return d
}

// terminalWidth returns the width of w, if it is a terminal.
func terminalWidth(w io.Writer) func() int {
	return func() int {
		f, ok := w.(*os.File)
		if !ok {
			return 0
		}
		cols, _, err := term.GetSize(int(f.Fd()))
		if err != nil {
			return 0
		}
		return cols
	}
}

func (d *display) tick() {
	defer close(d.done)
	t := time.NewTicker(refresh)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.mu.Lock()
			if d.stage != "" {
				d.draw()
			}
			d.mu.Unlock()
		}
	}
}

// close ends the running stage as stopped, if any, and stops redrawing.
func (d *display) close() {
	d.end(false)
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.done
}

// begin ends the running stage (as done) and starts s for image.
func (d *display) begin(s scan.Stage, image string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.finish(true)
	d.stage, d.label, d.start = s, image, time.Now()
	if ref, err := imageref.Parse(image); err == nil {
		d.source = ref.Kind
	}
	if s == scan.StageExporting {
		// Clair may fetch layers while the export goes on.
		d.read, d.expected, d.lastPct = 0, 0, -1
		d.fetched = map[digest.Digest]bool{}
	}
	d.draw()
}

// end ends the running stage: ok says whether it succeeded.
func (d *display) end(ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.finish(ok)
}

// progress records how far the export is, and draws a new percentage.
func (d *display) progress(p dockersave.Progress) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stage != scan.StageExporting {
		return
	}
	d.read, d.expected = p.Bytes, p.Expected
	if pct, ok := d.percent(); ok && pct != d.lastPct || time.Since(d.last) >= refresh {
		d.draw()
	}
}

// loaded ends the exporting stage once the loader is done.
func (d *display) loaded(img dockersave.Image, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if errors.Is(err, scan.ErrAlreadyIndexed) {
		d.writeLine(fmt.Sprintf("%s: Clair has indexed it already, not exported", d.label))
		d.stage = ""
		return
	}
	if err != nil {
		d.finish(false)
		return
	}
	d.layers = len(img.Manifest.Layers)
	if img.CacheHit {
		d.writeLine(fmt.Sprintf("%s: in the cache, not exported again", d.label))
		d.stage = ""
		return
	}
	d.finish(true)
}

// fetch records a layer request of Clair's.
func (d *display) fetch(f bridge.Fetch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fetched != nil && f.Status == 200 && f.Err == nil && f.Digest != "" {
		d.fetched[f.Digest] = true
		d.draw()
	}
}

// Write writes log output above the running stage's line.
func (d *display) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.drawn {
		io.WriteString(d.w, "\r\033[K")
		d.drawn = false
	}
	n, err := d.w.Write(p)
	if d.stage != "" {
		d.draw()
	}
	return n, err
}

// percent is the export's percentage of the expected size: below 100
// until the export is done, however many bytes it read.
func (d *display) percent() (int, bool) {
	if d.expected <= 0 {
		return 0, false
	}
	return int(min(d.read*100/d.expected, 99)), true
}

// draw redraws the running stage's line. d.mu is held.
func (d *display) draw() {
	elapsed := time.Since(d.start)
	var line string
	switch d.stage {
	case scan.StageExporting:
		line = d.verb(false) + " " + d.label
		if pct, ok := d.percent(); ok {
			// The expected size is an estimate: past it, the total shown
			// follows the bytes read.
			line += fmt.Sprintf(" %s %3d%%  %s / %s", bar(pct, 20), pct, humanSize(float64(d.read)), humanSize(float64(max(d.expected, d.read))))
			d.lastPct = pct
		} else if d.read > 0 {
			line += "  " + humanSize(float64(d.read))
		}
		if d.read == 0 {
			// A daemon may prepare the whole export before it sends a byte.
			line += "  " + roundDuration(elapsed)
		}
		if rate := float64(d.read) / elapsed.Seconds(); d.read > 0 && elapsed > 0 {
			line += fmt.Sprintf("  %s/s", humanSize(rate))
			if d.expected > d.read {
				line += "  ETA " + roundDuration(time.Duration(float64(d.expected-d.read)/rate*float64(time.Second)))
			}
		}
	case scan.StageIndexing:
		line = fmt.Sprintf("indexing %s: Clair fetched %d of %d layers  %s", d.label, len(d.fetched), d.layers, roundDuration(elapsed))
	case scan.StageMatching:
		line = fmt.Sprintf("matching %s: Clair is matching vulnerabilities  %s", d.label, roundDuration(elapsed))
	default:
		return
	}
	if cols := d.cols(); cols > 1 {
		line = truncate(line, cols-1)
	}
	io.WriteString(d.w, "\r\033[K"+line)
	d.drawn, d.last = true, time.Now()
}

// finish replaces the running stage's line with its summary. d.mu is held.
func (d *display) finish(ok bool) {
	if d.stage == "" {
		return
	}
	elapsed := roundDuration(time.Since(d.start))
	var line string
	switch {
	case !ok:
		line = fmt.Sprintf("%s %s: stopped after %s", d.stage, d.label, elapsed)
	case d.stage == scan.StageExporting:
		line = d.verb(true) + " " + d.label
		if d.expected > 0 {
			line += " " + bar(100, 20) + " 100%"
		}
		line += fmt.Sprintf("  %s in %s", humanSize(float64(d.read)), elapsed)
		if s := time.Since(d.start).Seconds(); s > 0 && d.read > 0 {
			line += fmt.Sprintf(", %s/s", humanSize(float64(d.read)/s))
		}
	case d.stage == scan.StageIndexing:
		line = fmt.Sprintf("indexed %s: Clair fetched %d of %d layers in %s", d.label, len(d.fetched), d.layers, elapsed)
	case d.stage == scan.StageMatching:
		line = fmt.Sprintf("matched %s in %s", d.label, elapsed)
	}
	d.writeLine(line)
	d.stage = ""
}

// writeLine replaces the running line with line and a newline. d.mu is held.
func (d *display) writeLine(line string) {
	if cols := d.cols(); cols > 1 {
		line = truncate(line, cols-1)
	}
	io.WriteString(d.w, "\r\033[K"+line+"\n")
	d.drawn = false
}

// verb names the exporting stage by its source: a daemon exports, a file
// is read.
func (d *display) verb(done bool) string {
	daemon := d.source == imageref.Daemon
	switch {
	case daemon && done:
		return "exported"
	case daemon:
		return "exporting"
	case done:
		return "read"
	default:
		return "reading"
	}
}

// bar is a progress bar of width cells, pct percent full.
func bar(pct, width int) string {
	full := pct * width / 100
	return "[" + strings.Repeat("=", full) + strings.Repeat(" ", width-full) + "]"
}

// truncate shortens s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return string(r[:n])
	}
	return string(r[:n-1]) + "…"
}

// roundDuration prints d to a tenth of a second below a minute, to the
// second above.
func roundDuration(d time.Duration) string {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// humanSize prints a byte count as docker images does: 5.61MB.
func humanSize(n float64) string { return units.HumanSizeWithPrecision(n, 3) }
