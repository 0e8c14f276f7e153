package reach

import (
	"strings"
)

// ContainerCommand is the docker run command line that runs layerbridge's
// image (make image: layerbridge, FROM scratch, user 65532) as a container
// on a Docker network, with the daemon's socket mounted and the socket's
// group added: there Clair's container name resolves, and Clair reaches
// layerbridge's own address on the network.
type ContainerCommand struct {
	Network string
	// Socket is the daemon's unix socket on the daemon's host; "" is
	// /var/run/docker.sock.
	Socket string
	// Group is the socket's group ID; "" has the shell read it with stat.
	Group string
	// User, when set, runs the container as that user instead of adding
	// the socket's group: "0" where the container's root is no more than
	// the daemon's user and owns its socket (a rootless daemon), or where
	// the socket's group on the daemon's host cannot be known from here
	// (Docker Desktop's VM).
	User string
	// Flags are more docker run flags (-d, --name, -p …); nil runs the
	// container once (--rm).
	Flags []string
	// Args follow the image: the command and its flags.
	Args []string
}

func (c ContainerCommand) String() string {
	sock := c.Socket
	if sock == "" {
		sock = "/var/run/docker.sock"
	}
	group := shellQuote(c.Group)
	if c.Group == "" {
		group = `"$(stat -c %g ` + shellQuote(sock) + `)"`
	}
	flags := c.Flags
	if flags == nil {
		flags = []string{"--rm"}
	}
	words := []string{"docker", "run"}
	for _, f := range flags {
		words = append(words, shellQuote(f))
	}
	words = append(words, "--network", shellQuote(c.Network), "-v", shellQuote(sock+":/var/run/docker.sock"))
	if c.User != "" {
		words = append(words, "--user", shellQuote(c.User))
	} else {
		words = append(words, "--group-add", group)
	}
	words = append(words, "layerbridge")
	for _, a := range c.Args {
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
