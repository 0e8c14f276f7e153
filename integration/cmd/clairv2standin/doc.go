// Command clairv2standin serves the Clair v2.1.7 stand-in on a loopback
// address, for trying layerbridge's --clair-api v2 path by hand:
//
//	go run ./cmd/clairv2standin --feed testdata/secdb --addr 127.0.0.1:6064
//
// It stops on Ctrl-C. Layers are kept in memory only.
//
// It is wiring only: the stand-in lives in package clairv2standin. It must
// not import layerbridge's product packages.
package main
