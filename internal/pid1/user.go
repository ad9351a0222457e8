package pid1

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// Default locations of the image's user databases.
const (
	PasswdPath = "/etc/passwd"
	GroupPath  = "/etc/group"
)

// User is the identity the agent runs as.
type User struct {
	UID, GID int
	// Groups are the supplementary groups to set (setgroups). Empty means none: the child never
	// keeps the entrypoint's (root's) groups.
	Groups []uint32
	// Name and Home come from /etc/passwd when the uid has an entry there; empty otherwise.
	Name, Home string
}

type passwdEntry struct {
	name     string
	uid, gid int
	home     string
}

type groupEntry struct {
	name    string
	gid     int
	members []string
}

// ResolveUser turns an AZP_RUN_AS value into a User, reading the image's passwd and group files:
//   - "name": that user's uid, primary gid and the supplementary groups that list the user
//     in the group file;
//   - "uid:gid" (either part may also be a name): exactly those ids and no supplementary groups;
//   - "uid": the gid of the uid's passwd entry (and that user's supplementary groups, as docker
//     does for --user uid), else the same number as the uid and no supplementary groups.
//
// Errors name AZP_RUN_AS and the value and are configuration errors.
func ResolveUser(spec, passwdPath, groupPath string) (User, error) {
	fail := func(format string, a ...any) (User, error) {
		return User{}, exit.Config(fmt.Errorf("AZP_RUN_AS=%q: %s", spec, fmt.Sprintf(format, a...)))
	}
	spec0 := strings.TrimSpace(spec)
	if spec0 == "" {
		return fail("empty (set a user name of the image, a uid or uid:gid)")
	}
	users, uerr := readPasswd(passwdPath)
	if uerr != nil && !errors.Is(uerr, fs.ErrNotExist) {
		return fail("read %s: %v", passwdPath, uerr)
	}
	userPart, groupPart, hasGroup := strings.Cut(spec0, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return fail("want a user name, uid or uid:gid")
	}

	var u User
	var entry *passwdEntry
	if id, isNum, err := parseID(userPart); isNum {
		if err != nil {
			return fail("uid %s", err)
		}
		u.UID = id
		entry = findUID(users, id)
	} else {
		entry = findName(users, userPart)
		if entry == nil {
			if uerr != nil {
				return fail("user %q not found: %s does not exist (use uid or uid:gid)", userPart, passwdPath)
			}
			return fail("user %q not found in %s (set a user of the image, or uid:gid)", userPart, passwdPath)
		}
		u.UID = entry.uid
	}
	if entry != nil {
		u.Name, u.Home = entry.name, entry.home
	}

	if hasGroup {
		// Exactly the given ids: no supplementary groups, by the contract.
		u.Groups = []uint32{}
		if id, isNum, err := parseID(groupPart); isNum {
			if err != nil {
				return fail("gid %s", err)
			}
			u.GID = id
			return u, nil
		}
		groups, gerr := readGroup(groupPath)
		if gerr != nil && !errors.Is(gerr, fs.ErrNotExist) {
			return fail("read %s: %v", groupPath, gerr)
		}
		for _, g := range groups {
			if g.name == groupPart {
				u.GID = g.gid
				return u, nil
			}
		}
		return fail("group %q not found in %s (use a numeric gid)", groupPart, groupPath)
	}

	if entry == nil {
		// A bare uid the image does not know: the same number as gid, nothing else.
		u.GID = u.UID
		u.Groups = []uint32{}
		return u, nil
	}
	u.GID = entry.gid
	groups, gerr := readGroup(groupPath)
	if gerr != nil && !errors.Is(gerr, fs.ErrNotExist) {
		return fail("read %s: %v", groupPath, gerr)
	}
	u.Groups = supplementary(groups, entry.name, entry.gid)
	return u, nil
}

// supplementary lists the primary gid first and then every group naming the user as a member,
// like initgroups(3).
func supplementary(groups []groupEntry, name string, primary int) []uint32 {
	out := []uint32{uint32(primary)}
	seen := map[int]bool{primary: true}
	for _, g := range groups {
		if seen[g.gid] {
			continue
		}
		for _, m := range g.members {
			if m == name {
				out = append(out, uint32(g.gid))
				seen[g.gid] = true
				break
			}
		}
	}
	return out
}

// parseID reports whether s is numeric and, if so, whether it is a valid id.
func parseID(s string) (id int, isNum bool, err error) {
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false, nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0xFFFFFFFF {
		return 0, true, fmt.Errorf("%q out of range", s)
	}
	return int(n), true, nil
}

func findUID(users []passwdEntry, uid int) *passwdEntry {
	for i := range users {
		if users[i].uid == uid {
			return &users[i]
		}
	}
	return nil
}

func findName(users []passwdEntry, name string) *passwdEntry {
	for i := range users {
		if users[i].name == name {
			return &users[i]
		}
	}
	return nil
}

// readPasswd parses name:password:uid:gid:gecos:home:shell lines, skipping comments and lines
// it cannot read (NSS "+" entries and the like), as libc does.
func readPasswd(path string) ([]passwdEntry, error) {
	var out []passwdEntry
	err := readColonFile(path, func(f []string) {
		if len(f) < 7 {
			return
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
			return
		}
		out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
	})
	return out, err
}

// readGroup parses name:password:gid:member,member lines.
func readGroup(path string) ([]groupEntry, error) {
	var out []groupEntry
	err := readColonFile(path, func(f []string) {
		if len(f) < 4 {
			return
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil || gid < 0 {
			return
		}
		g := groupEntry{name: f[0], gid: gid}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				g.members = append(g.members, m)
			}
		}
		out = append(out, g)
	})
	return out, err
}

func readColonFile(path string, line func([]string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		line(strings.Split(text, ":"))
	}
	return sc.Err()
}
