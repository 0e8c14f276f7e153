package sidecar

import (
	"context"
	"sync"

	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
	"github.com/layerbridge/layerbridge/scan"
)

// detectedAPI is the API Clair speaks, once a scan or a readiness probe
// found it: scans then start without probing Clair again. A scan that Clair
// answers like the other API generation (Clair was replaced) forgets it.
type detectedAPI struct {
	mu  sync.Mutex
	api string // "" until known
}

func (d *detectedAPI) get() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.api
}

func (d *detectedAPI) set(api string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.api = api
}

// detect returns the API Clair speaks: the one known, or what
// scan.DetectAPI finds now (bounded by scan.DefaultProbeTimeout), which is
// then kept.
func (s *Service) detect(ctx context.Context) (string, error) {
	if api := s.api.get(); api != "" {
		return api, nil
	}
	ctx, cancel := context.WithTimeout(ctx, scan.DefaultProbeTimeout)
	defer cancel()
	api, err := scan.DetectAPI(ctx, s.cfg.Clair)
	if err != nil {
		return "", err
	}
	s.api.set(api)
	s.log.Debug("clair api detected", "url", s.cfg.Clair.URL.Redacted(), "api", api)
	return api, nil
}

// forgetAPIOn forgets the detected API when err says Clair answered like
// the other API generation: the next scan detects it again.
func (s *Service) forgetAPIOn(err error) {
	if err != nil && (clairv4.IsWrongAPI(err) || clairv2.IsWrongAPI(err)) {
		s.api.set("")
		s.log.Info("clair answered like the other API generation: its API is detected again by the next scan", "err", err)
	}
}
