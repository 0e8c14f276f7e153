package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// loopbackServer is an http.Server on a free 127.0.0.1 port, serving until
// Close or the end of the context it was started with.
type loopbackServer struct {
	url      string
	srv      *http.Server
	done     chan struct{} // closed when Serve has returned
	serveErr error         // set before done is closed
}

func serveLoopback(ctx context.Context, h http.Handler) (*loopbackServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
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
