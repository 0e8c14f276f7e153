package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// loopbackServer is an http.Server on a free port of one local address
// (127.0.0.1 unless started with serveOn), serving until Close or the end of
// the context it was started with.
type loopbackServer struct {
	url      string
	srv      *http.Server
	done     chan struct{} // closed when Serve has returned
	serveErr error         // set before done is closed
}

func serveLoopback(ctx context.Context, h http.Handler) (*loopbackServer, error) {
	return serveOn(ctx, netip.AddrFrom4([4]byte{127, 0, 0, 1}), h)
}

// serveOn is serveLoopback on a free port of addr, which must be an address
// of this host (such as the gateway of a Docker network, see Network).
func serveOn(ctx context.Context, addr netip.Addr, h http.Handler) (*loopbackServer, error) {
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s := &loopbackServer{
		url:  "http://" + l.Addr().String(),
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		s.serveErr = s.srv.Serve(l)
		close(s.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.srv.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// close stops accepting connections and closes the open ones; a server
// whose clients (Clair downloading a layer) are mid-transfer is not waited
// for.
func (s *loopbackServer) close() error {
	err := s.srv.Close()
	<-s.done
	if !errors.Is(s.serveErr, http.ErrServerClosed) && err == nil {
		err = s.serveErr
	}
	return err
}

// freePort returns a loopback TCP port that was free a moment ago, for
// programs that must be told their port (PostgreSQL, Clair). Callers retry
// on "address already in use".
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
