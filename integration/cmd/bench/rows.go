package main

import (
	"fmt"
	"runtime"
	"time"

	"github.com/layerbridge/layerbridge/integration/harness"
)

// tableInput is everything the table is built from.
type tableInput struct {
	built     []*builtImage
	modes     []string
	data      map[key]samples
	serveErrs map[key][]error
	clair     *harness.Timings
	docker    string
	version   string
	loadStart string
	loadEnd   string
}

func modeTitle(mode string) string {
	switch mode {
	case cacheDrop:
		return "page cache dropped before each run"
	default:
		return "page cache kept"
	}
}

// buildTable lays out the measurements with the targets of issues 8 and 18.
func buildTable(o options, in tableInput) *table {
	t := &table{}
	t.title = []string{
		fmt.Sprintf("layerbridge benchmark, %s", time.Now().UTC().Format("2006-01-02 15:04 MST")),
		fmt.Sprintf("%s; %s; %d CPUs; %d runs of each measurement, interleaved (order rotated every round); each figure: median, min, max over the runs",
			in.version, in.docker, runtime.NumCPU(), o.runs),
		fmt.Sprintf("load average at start: %s; at end: %s", in.loadStart, in.loadEnd),
	}
	get := func(mode, image, what string) samples { return in.data[key{mode, image, what}] }
	median := samples.median
	maximum := samples.max
	for _, mode := range in.modes {
		if !o.skipExport {
			t.section(fmt.Sprintf("export into the store (%s)", modeTitle(mode)))
		}
		for _, b := range in.built {
			if o.skipExport {
				break
			}
			n := b.spec.name
			t.add(row{measure: "floor: docker save via the API, to discard", image: n, unit: unitSeconds, values: get(mode, n, "floor")})
			t.add(row{measure: "naive: docker save to a file, then untar it", image: n, unit: unitSeconds, values: get(mode, n, "naive")})
			t.add(row{measure: "  naive / floor (per round)", image: n, unit: unitRatio, values: get(mode, n, "naive/floor")})
			bins := []struct{ prefix, label string }{{"", "layerbridge"}}
			if o.baseline != "" {
				bins = append(bins, struct{ prefix, label string }{"base-", "baseline"})
			}
			for _, bin := range bins {
				t.add(row{measure: bin.label + " inspect, cold (empty cache)", image: n, unit: unitSeconds, values: get(mode, n, bin.prefix+"cold")})
				t.add(row{measure: "  cold / floor (per round)", image: n, unit: unitRatio, values: get(mode, n, bin.prefix+"cold/floor"),
					target: atMost(1.15, "median <= 1.15x", median)})
				t.add(row{measure: "  cold: cpu (user+sys)", image: n, unit: unitSeconds, values: get(mode, n, bin.prefix+"cold-cpu")})
				t.add(row{measure: "  cold: peak RSS (wait4 maxrss)", image: n, unit: unitMiB, values: get(mode, n, bin.prefix+"cold-rss"),
					target: atMost(64<<20, "max <= 64 MiB", maximum)})
				t.add(row{measure: bin.label + " inspect, warm (stored)", image: n, unit: unitMillis, values: get(mode, n, bin.prefix+"warm"),
					target: atMost(0.150, "median <= 150 ms", median)})
			}
			t.add(row{measure: "other processes' cpu during floor (cores)", image: n, unit: unitCores, values: get(mode, n, "floor-other")})
			t.add(row{measure: "other processes' cpu during cold (cores)", image: n, unit: unitCores, values: get(mode, n, "cold-other")})
		}
		if o.skipServe {
			continue
		}
		t.section(fmt.Sprintf("serving from the bridge on loopback, the bridge's record of each request checked (%s)", modeTitle(mode)))
		for _, b := range in.built {
			n := b.spec.name
			for _, sv := range []struct {
				clients int
				rehash  bool
				measure string
				target  *target
			}{
				{1, false, "1 client, the 1 GiB layer (length checked)", atLeast(1, "median >= 1 GiB/s", median)},
				{1, true, "1 client, the 1 GiB layer, re-hashed", atLeast(0, "0 errors", median)},
				{64, true, "64 clients, one 100 MiB layer each, re-hashed (aggregate)", atLeast(0, "0 errors", median)},
			} {
				k := key{mode, n, fmt.Sprintf("serve-%d-rehash=%v", sv.clients, sv.rehash)}
				v := in.data[k]
				if len(v) == 0 {
					continue
				}
				r := row{measure: sv.measure, image: n, unit: unitGiBps, values: v, target: sv.target}
				if errs := in.serveErrs[k]; len(errs) > 0 {
					r.fail = fmt.Sprintf("%d errors, first: %v", len(errs), errs[0])
				}
				t.add(r)
				t.add(row{measure: "  other processes' cpu meanwhile (cores)", image: n, unit: unitCores, values: in.data[key{mode, n, k.what + "-other"}]})
			}
		}
	}
	if v := in.data[key{"", "scan", "first"}]; len(v) > 0 {
		get := func(what string) samples { return in.data[key{"", "scan", what}] }
		engine := "the local docker daemon"
		if o.scanEngine == scanEngineDocker29 {
			engine = "docker engine 29.8.1, containerd image store (harness)"
		}
		t.section(fmt.Sprintf("end-to-end scans against Clair v4.9 (harness) on %s: a new image per round (alpine package database + %d x %d MiB random layers), empty cache",
			engine, o.scanLayers, o.scanSize>>20))
		t.add(row{measure: "floor: docker save via the API, to discard", image: "scan", unit: unitSeconds, values: get("floor")})
		t.add(row{measure: "first scan (image new to clair), total", image: "scan", unit: unitSeconds, values: get("first")})
		t.add(row{measure: "  first / floor (per round)", image: "scan", unit: unitRatio, values: get("first/floor"),
			target: atMost(1.25, "median <= 1.25x", median)})
		t.add(row{measure: "  stages, from the scan's start: export ends", image: "scan", unit: unitSeconds, values: get("export-end")})
		t.add(row{measure: "  index (clair fetches, indexes) starts", image: "scan", unit: unitSeconds, values: get("index-start")})
		t.add(row{measure: "  index ends", image: "scan", unit: unitSeconds, values: get("index-end")})
		t.add(row{measure: "  match (vulnerability report) starts", image: "scan", unit: unitSeconds, values: get("match-start")})
		t.add(row{measure: "  match ends", image: "scan", unit: unitSeconds, values: get("match-end")})
		t.add(row{measure: "  layer bytes clair fetched", image: "scan", unit: unitMiB, values: get("fetched")})
		t.add(row{measure: "re-scan, empty cache (clair knows the image), total", image: "scan", unit: unitSeconds, values: get("again")})
		t.add(row{measure: "  re-scan / floor (per round)", image: "scan", unit: unitRatio, values: get("again/floor"),
			target: atMost(0.05, "median <= 0.05x", median)})
		t.add(row{measure: "findings", image: "scan", unit: unitCount, values: get("findings")})
		if b := get("bound"); len(b) > 0 {
			t.add(row{measure: "bound of a first scan (another new image): its floor", image: "scan", unit: unitSeconds, values: get("bound-floor")})
			t.add(row{measure: "  docker save to discard while clair indexes the same", image: "scan", unit: unitSeconds, values: b})
			t.add(row{measure: "  layers from a warm cache from the first byte on", image: "scan", unit: unitRatio, values: get("bound/floor")})
		}
	}
	t.footer = append(t.footer,
		"cold and warm run the layerbridge binary (inspect --format json --cache-dir DIR IMAGE) as a user would; serving and scans link bridge and scan in-process.",
		"Docker 20.10 refuses images of more than 125 layers (\"max depth exceeded\"): 125x1mib stands in for the issue's 200 x 1 MiB image; go test -bench ReadArchive covers 200 layers without Docker.",
		"The naive path does not fsync (neither docker save -o nor tar -x do); layerbridge fsyncs every blob before publishing it.")
	if in.clair != nil {
		t.footer = append(t.footer, fmt.Sprintf("harness: clair build %s (compiled: %v), postgres %s, clair up %s, first vulnerability update %s",
			in.clair.ClairBuild.Round(time.Second), in.clair.ClairBuilt, in.clair.Postgres.Round(time.Millisecond),
			in.clair.ClairUp.Round(time.Millisecond), in.clair.FirstUpdate.Round(time.Millisecond)))
	}
	return t
}
