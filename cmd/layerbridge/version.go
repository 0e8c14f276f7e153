package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

const versionHelp = `Usage:
    layerbridge version

Prints layerbridge's version, the commit it was built from and the Go version.
`

func runVersion(_ context.Context, name string, args []string, _ env, stdout, _ io.Writer) error {
	fs := newFlagSet(name, versionHelp, stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s takes no arguments", name)
	}
	fmt.Fprintf(stdout, "layerbridge %s (%s, %s %s/%s)\n", version, revision(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

func revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown commit"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return "unknown commit"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return "commit " + rev + dirty
}
