package reach

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"

	"github.com/layerbridge/layerbridge/engine"
)

// movingContainers is a daemon whose one container, clair, is at the
// addresses given in turn: the last one stays.
type movingContainers struct {
	mu    sync.Mutex
	ips   []netip.Addr
	calls int
}

func (m *movingContainers) RunningContainers(context.Context) ([]engine.Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ip := m.ips[min(m.calls, len(m.ips)-1)]
	m.calls++
	return []engine.Container{{
		ID: "c1a1r00000000000000000000000000000000000000000000000000000000000", Names: []string{"clair"},
		Networks: []engine.ContainerNetwork{{Name: "clair-network", IP: ip, Subnet: netip.PrefixFrom(ip, 8).Masked()}},
	}}, nil
}

func (m *movingContainers) listings() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// The Clair clients' transport with the Dialer: requests to http://clair:PORT
// reach the container's address; other hosts are dialed as usual.
func TestDialerRoutesTheName(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "clair "+r.Host) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	daemon := &movingContainers{ips: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	d := NewDialer("clair", Names{
		Containers: daemon,
		Interfaces: func() ([]netip.Prefix, error) { return []netip.Prefix{netip.MustParsePrefix("127.0.0.9/8")}, nil },
		Lookup:     notFound,
	})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	c := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	for range 3 {
		resp, err := c.Get("http://clair:" + port + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "clair clair:"+port {
			t.Errorf("answer %q: the request must keep Clair's name as its Host", b)
		}
	}
	if r, ok := d.Route(); !ok || r.IP != netip.MustParseAddr("127.0.0.1") || r.Container != "clair" {
		t.Errorf("route %+v, %v", r, ok)
	}
	if n := daemon.listings(); n != 1 {
		t.Errorf("the daemon was asked %d times, want once: the route is kept", n)
	}
	// Another host is dialed as it is.
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if addrs, err := d.LookupNetIP(t.Context(), "clair"); err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("LookupNetIP(clair) = %v, %v; want the route's address", addrs, err)
	}
}

// A container restarted with another address: the dial to the old one
// fails, the name is resolved again, and the new address is dialed.
func TestDialerFollowsAMovedContainer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	// 127.0.0.2: nothing listens there on that port.
	daemon := &movingContainers{ips: []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")}}
	d := NewDialer("clair", Names{
		Containers: daemon,
		Interfaces: func() ([]netip.Prefix, error) { return []netip.Prefix{netip.MustParsePrefix("127.0.0.9/8")}, nil },
		Lookup:     notFound,
	})
	conn, err := d.DialContext(t.Context(), "tcp", "clair:"+port)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if r, _ := d.Route(); r.IP != netip.MustParseAddr("127.0.0.1") || daemon.listings() != 2 {
		t.Errorf("route %+v after %d listings, want the new address after two", r, daemon.listings())
	}
}

// A name nobody knows is a dial error (so the Clair clients call Clair
// unreachable) wrapping the NameError; it is not kept.
func TestDialerReportsANameNobodyKnows(t *testing.T) {
	lister := &countingLister{fakeContainers: fakeContainers{list: []engine.Container{postgresDB}}}
	d := NewDialer("clair", Names{Containers: lister, Lookup: notFound})
	for range 2 {
		_, err := d.DialContext(t.Context(), "tcp", "clair:6060")
		var op *net.OpError
		var ne *NameError
		if !errors.As(err, &op) || op.Op != "dial" || !errors.As(err, &ne) {
			t.Fatalf("err = %#v, want a dial error wrapping a NameError", err)
		}
	}
	if lister.n.Load() != 2 {
		t.Errorf("the daemon was asked %d times, want each time: a failure is not kept", lister.n.Load())
	}
}
