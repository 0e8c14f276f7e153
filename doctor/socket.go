package doctor

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// socketInfo is what stat says about the daemon's unix socket.
type socketInfo struct {
	path     string // "" for endpoints that are not unix sockets
	err      error  // from stat
	isSocket bool
	mode     fs.FileMode
	perm     fs.FileMode
	uid, gid uint32
	owner    string // user name of uid, "" if unknown
	group    string // group name of gid, "" if unknown
}

func statSocket(path string) socketInfo {
	s := socketInfo{path: path}
	if path == "" {
		return s
	}
	fi, err := os.Stat(path)
	if err != nil {
		s.err = err
		return s
	}
	s.mode, s.perm = fi.Mode(), fi.Mode().Perm()
	s.isSocket = fi.Mode()&fs.ModeSocket != 0
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.uid, s.gid = st.Uid, st.Gid
		if u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
			s.owner = u.Username
		}
		if g, err := user.LookupGroupId(strconv.FormatUint(uint64(st.Gid), 10)); err == nil {
			s.group = g.Name
		}
	}
	return s
}

// lsMode renders the mode as ls -l does, then in octal: "srw-rw---- (0660)".
func lsMode(s socketInfo) string {
	kind := "-"
	switch {
	case s.isSocket:
		kind = "s"
	case s.mode.IsDir():
		kind = "d"
	}
	return fmt.Sprintf("%s%s (%04o)", kind, s.perm.String()[1:], uint32(s.perm))
}

// identity is who this process is, for file permission checks.
type identity struct {
	uid    uint32
	name   string
	gids   []uint32 // the process's effective and supplementary groups
	listed []uint32 // the groups the user database lists for the user (may include groups added since login)
	names  map[uint32]string
}

func currentIdentity() identity {
	id := identity{uid: uint32(os.Geteuid()), names: map[uint32]string{}}
	id.gids = append(id.gids, uint32(os.Getegid()))
	if gs, err := os.Getgroups(); err == nil {
		for _, g := range gs {
			if !slices.Contains(id.gids, uint32(g)) {
				id.gids = append(id.gids, uint32(g))
			}
		}
	}
	if u, err := user.LookupId(strconv.FormatUint(uint64(id.uid), 10)); err == nil {
		id.name = u.Username
		if gs, err := u.GroupIds(); err == nil {
			for _, g := range gs {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil {
					id.listed = append(id.listed, uint32(n))
				}
			}
		}
	}
	for _, g := range id.gids {
		if grp, err := user.LookupGroupId(strconv.FormatUint(uint64(g), 10)); err == nil {
			id.names[g] = grp.Name
		}
	}
	return id
}

// String reads "uid 1000 (alice), groups 1000 (alice), 27 (sudo)".
func (id identity) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "uid %d", id.uid)
	if id.name != "" {
		fmt.Fprintf(&b, " (%s)", id.name)
	}
	b.WriteString(", groups ")
	for i, g := range id.gids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d", g)
		if n := id.names[g]; n != "" {
			fmt.Fprintf(&b, " (%s)", n)
		}
	}
	return b.String()
}

// listedIn reports that the user database puts the user in gid although
// this process does not carry it: the user was added after logging in.
func (id identity) listedIn(gid uint32) bool {
	return slices.Contains(id.listed, gid) && !slices.Contains(id.gids, gid)
}

type verdict struct {
	allowed bool
	reason  string
}

// access applies the kernel's rule for connect(2) on a unix socket: write
// permission on the file, checked against the owner bits if the process is
// the owner, else the group bits if it is in the group, else the others
// bits; root bypasses the check.
func (id identity) access(s socketInfo) verdict {
	group := nameOrID(s.group, s.gid)
	switch {
	case id.uid == 0:
		return verdict{true, "root may open any socket"}
	case id.uid == s.uid:
		if s.perm&0o200 != 0 {
			return verdict{true, "you own it and the owner may write"}
		}
		return verdict{false, "you own it but its mode gives the owner no write permission"}
	case slices.Contains(id.gids, s.gid):
		if s.perm&0o020 != 0 {
			return verdict{true, fmt.Sprintf("you are in its group %s, which may write", group)}
		}
		return verdict{false, fmt.Sprintf("you are in its group %s but its mode gives the group no write permission", group)}
	case s.perm&0o002 != 0:
		return verdict{true, "its mode lets everyone write"}
	}
	return verdict{false, fmt.Sprintf("you are neither its owner nor in its group %s, and others may not write", group)}
}
