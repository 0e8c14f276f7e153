package reach

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// loopbackOnly makes Advertise see a host whose only address, and route to
// Clair, is 127.0.0.1.
var loopbackOnly = AdvertiseOptions{
	LocalAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil },
	RouteAddr:  func(context.Context, string) (netip.Addr, error) { return netip.MustParseAddr("127.0.0.1"), nil },
}

func TestListen(t *testing.T) {
	clair, _ := url.Parse("http://127.0.0.1:6060")
	free := freePort(t)
	tests := []struct {
		name       string
		opts       ListenOptions
		wantBase   string // "" means: http://127.0.0.1:<the listener's port>
		wantListen string // the listener's address; "" means 127.0.0.1:<any>
		wantReason string
	}{
		{
			name:       "detected",
			opts:       ListenOptions{AdvertiseOptions: loopbackOnly},
			wantReason: "is on loopback",
		},
		{
			name:       "--advertise alone listens on every interface at its port",
			opts:       ListenOptions{Advertise: mustURL(t, "http://layerbridge.example:"+free), AdvertiseOptions: loopbackOnly},
			wantBase:   "http://layerbridge.example:" + free,
			wantListen: "[::]:" + free,
			wantReason: "it was given with --advertise",
		},
		{
			name:       "--listen's IP wins over the detected one",
			opts:       ListenOptions{Listen: "127.0.0.2:0", AdvertiseOptions: loopbackOnly},
			wantReason: "--listen names 127.0.0.2; detection would have chosen 127.0.0.1",
		},
		{
			name:       "--listen on every interface keeps the detected address",
			opts:       ListenOptions{Listen: "0.0.0.0:0", AdvertiseOptions: loopbackOnly},
			wantReason: "is on loopback",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep, err := Listen(t.Context(), clair, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Listener.Close()
			port := strconv.Itoa(ep.Listener.Addr().(*net.TCPAddr).Port)
			want := tc.wantBase
			if want == "" {
				host := "127.0.0.1"
				if h, _, _ := net.SplitHostPort(tc.opts.Listen); h != "" && h != "0.0.0.0" {
					host = h
				}
				want = "http://" + net.JoinHostPort(host, port)
			}
			if ep.Base.String() != want {
				t.Errorf("base %s, want %s", ep.Base, want)
			}
			if tc.wantListen != "" && ep.Listener.Addr().String() != tc.wantListen {
				t.Errorf("listening on %s, want %s", ep.Listener.Addr(), tc.wantListen)
			}
			if !strings.Contains(ep.Reason, tc.wantReason) {
				t.Errorf("reason %q, want it to contain %q", ep.Reason, tc.wantReason)
			}
		})
	}
}

func TestAdvertiseListener(t *testing.T) {
	clair, _ := url.Parse("http://127.0.0.1:6060")
	for _, tc := range []struct {
		name, listen, advertise string
		wantHost, wantReason    string
	}{
		{"on every interface: the detected address", "0.0.0.0:0", "", "127.0.0.1", "is on loopback"},
		{"on one IP: that IP", "127.0.0.2:0", "", "127.0.0.2", "--listen names 127.0.0.2; detection would have chosen 127.0.0.1"},
		{"--advertise: as it is", "127.0.0.1:0", "http://layerbridge:8080", "layerbridge:8080", "it was given with --advertise"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			opts := ListenOptions{AdvertiseOptions: loopbackOnly}
			if tc.advertise != "" {
				opts.Advertise = mustURL(t, tc.advertise)
			}
			ep, err := AdvertiseListener(t.Context(), clair, ln, opts)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.wantHost
			if tc.advertise == "" {
				want = net.JoinHostPort(tc.wantHost, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
			}
			if ep.Base.Host != want || ep.Listener != ln || !strings.Contains(ep.Reason, tc.wantReason) {
				t.Errorf("got %s (%q), want host %s and a reason containing %q", ep.Base, ep.Reason, want, tc.wantReason)
			}
		})
	}
}

func TestListenFailsOnABusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	clair, _ := url.Parse("http://127.0.0.1:6060")
	_, err = Listen(t.Context(), clair, ListenOptions{Listen: busy.Addr().String(), AdvertiseOptions: loopbackOnly})
	if err == nil || !strings.Contains(err.Error(), "listen on "+busy.Addr().String()) || !strings.Contains(err.Error(), "the address clair can reach") {
		t.Errorf("err = %v, want the address and why it was chosen", err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
