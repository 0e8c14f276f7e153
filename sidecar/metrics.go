package sidecar

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/layerbridge/layerbridge/bridge"
)

// metrics are the Service's Prometheus metrics, on a registry of its own
// (never the global default one), exposed at /metrics.
//
//	layerbridge_scans_total{outcome="done|failed|cancelled"}     scans finished
//	layerbridge_scans_deduplicated_total                         requests that joined an identical running scan
//	layerbridge_scans_active{state="queued|exporting|indexing|matching"}
//	layerbridge_export_duration_seconds{cache="hit|miss"}         loading an image into the store
//	layerbridge_index_duration_seconds                           Clair downloading and indexing the layers
//	layerbridge_match_duration_seconds                           Clair matching vulnerabilities
//	layerbridge_layer_bytes_served_total                         layer bytes sent to Clair
//	layerbridge_layer_requests_total{code}                       layer requests by HTTP status
//	layerbridge_cache_size_bytes                                 store size after the last prune
//	layerbridge_cache_max_size_bytes                             --cache-max-size (absent without a limit)
//	layerbridge_cache_evicted_bytes_total                        bytes pruned from the store
//
// plus the Go runtime's and the process's standard collectors.
type metrics struct {
	reg           *prometheus.Registry
	scans         *prometheus.CounterVec
	deduplicated  prometheus.Counter
	active        *prometheus.GaugeVec
	export        *prometheus.HistogramVec
	index         prometheus.Histogram
	match         prometheus.Histogram
	bytes         prometheus.Counter
	layerRequests *prometheus.CounterVec
	cacheSize     prometheus.Gauge
	cacheLimit    prometheus.Gauge
	evicted       prometheus.Counter
}

// durationBuckets span 50ms to about 14 minutes.
var durationBuckets = prometheus.ExponentialBuckets(0.05, 2, 15)

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "layerbridge_scans_total", Help: "Scans finished, by outcome (done, failed, cancelled by shutdown).",
		}, []string{"outcome"}),
		deduplicated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "layerbridge_scans_deduplicated_total", Help: "Scan requests answered with an identical scan already queued or running.",
		}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "layerbridge_scans_active", Help: "Scans queued or running, by state.",
		}, []string{"state"}),
		export: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "layerbridge_export_duration_seconds", Help: "Time to load an image into the store (cache: hit when it was already stored).",
			Buckets: durationBuckets,
		}, []string{"cache"}),
		index: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "layerbridge_index_duration_seconds", Help: "Time Clair took to download and index an image's layers.",
			Buckets: durationBuckets,
		}),
		match: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "layerbridge_match_duration_seconds", Help: "Time Clair took to match an indexed image's vulnerabilities.",
			Buckets: durationBuckets,
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "layerbridge_layer_bytes_served_total", Help: "Layer bytes sent to Clair.",
		}),
		layerRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "layerbridge_layer_requests_total", Help: "Layer requests, by HTTP status.",
		}, []string{"code"}),
		cacheSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "layerbridge_cache_size_bytes", Help: "Bytes in the image store after the last prune.",
		}),
		cacheLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "layerbridge_cache_max_size_bytes", Help: "The image store's size limit (--cache-max-size).",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "layerbridge_cache_evicted_bytes_total", Help: "Bytes evicted from the image store.",
		}),
	}
	for _, o := range []string{"done", "failed", "cancelled"} {
		m.scans.WithLabelValues(o)
	}
	for _, c := range []string{"hit", "miss"} {
		m.export.WithLabelValues(c)
	}
	m.setActive(map[State]int{StateQueued: 0, StateExporting: 0, StateIndexing: 0, StateMatching: 0})
	m.reg.MustRegister(m.scans, m.deduplicated, m.active, m.export, m.index, m.match, m.bytes,
		m.layerRequests, m.cacheSize, m.evicted,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerCacheLimit exposes the limit; only a Service with one calls it.
func (m *metrics) registerCacheLimit(limit int64) {
	m.cacheLimit.Set(float64(limit))
	m.reg.MustRegister(m.cacheLimit)
}

func (m *metrics) setActive(counts map[State]int) {
	for st, n := range counts {
		m.active.WithLabelValues(string(st)).Set(float64(n))
	}
}

func (m *metrics) observeExport(d time.Duration, cacheHit bool) {
	c := "miss"
	if cacheHit {
		c = "hit"
	}
	m.export.WithLabelValues(c).Observe(d.Seconds())
}

// observeFetch is the bridge's fetch observer: it runs on the request's
// goroutine, so it only adds.
func (m *metrics) observeFetch(f bridge.Fetch) {
	m.bytes.Add(float64(f.Bytes))
	m.layerRequests.WithLabelValues(strconv.Itoa(f.Status)).Inc()
}
