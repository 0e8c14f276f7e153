// Command fakelayerbridge stands in for the layerbridge binary in the demo's
// own test: it checks it was run as `layerbridge scan --clair URL IMAGE`
// with CLAIR_ADDR set, that Clair answers at URL and that IMAGE exists in
// the Docker daemon, prints what it saw on stdout and a note on stderr, and
// exits with $FAKE_EXIT (default 0). With FAKE_BLOCK set it then waits for
// SIGINT instead, and exits 130 when it comes.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"

	"github.com/moby/moby/client"
)

func main() {
	if err := check(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fakelayerbridge:", err)
		os.Exit(99)
	}
	fmt.Fprintln(os.Stderr, "fakelayerbridge: to stderr")
	if os.Getenv("FAKE_BLOCK") != "" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		fmt.Println("FAKE-LAYERBRIDGE BLOCKING")
		<-sig
		fmt.Println("FAKE-LAYERBRIDGE INTERRUPTED")
		os.Exit(130)
	}
	code, _ := strconv.Atoi(os.Getenv("FAKE_EXIT"))
	os.Exit(code)
}

func check(args []string) error {
	if len(args) != 4 || args[0] != "scan" || args[1] != "--clair" {
		return fmt.Errorf("args %q, want scan --clair URL IMAGE", args)
	}
	url, image := args[2], args[3]
	if os.Getenv("CLAIR_ADDR") != url {
		return fmt.Errorf("CLAIR_ADDR %q, want %q", os.Getenv("CLAIR_ADDR"), url)
	}
	resp, err := http.Get(url + "/indexer/api/v1/index_state")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("clair index_state: %s", resp.Status)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer cli.Close()
	img, err := cli.ImageInspect(context.Background(), image)
	if err != nil {
		return err
	}
	fmt.Printf("FAKE-LAYERBRIDGE OK clair=%s image=%s id=%s\n", url, image, img.ID)
	return nil
}
