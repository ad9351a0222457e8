package pid1

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

func TestResolveUser(t *testing.T) {
	passwd := filepath.Join("testdata", "passwd")
	group := filepath.Join("testdata", "group")
	tests := []struct {
		spec string
		want User
	}{
		// A name: uid, primary gid and supplementary groups (primary first, then memberships).
		{"agent", User{UID: 1000, GID: 1000, Groups: []uint32{1000, 999, 10}, Name: "agent", Home: "/home/agent"}},
		{"builder", User{UID: 1001, GID: 100, Groups: []uint32{100, 999, 2000}, Name: "builder", Home: "/home/builder"}},
		{"daemon", User{UID: 1, GID: 1, Groups: []uint32{1}, Name: "daemon", Home: "/usr/sbin"}},
		{" agent ", User{UID: 1000, GID: 1000, Groups: []uint32{1000, 999, 10}, Name: "agent", Home: "/home/agent"}},
		// uid:gid: exactly those, no supplementary groups, even when the uid is known.
		{"1000:1000", User{UID: 1000, GID: 1000, Groups: []uint32{}, Name: "agent", Home: "/home/agent"}},
		{"1000:999", User{UID: 1000, GID: 999, Groups: []uint32{}, Name: "agent", Home: "/home/agent"}},
		{"4242:4343", User{UID: 4242, GID: 4343, Groups: []uint32{}}},
		{"agent:docker", User{UID: 1000, GID: 999, Groups: []uint32{}, Name: "agent", Home: "/home/agent"}},
		// Bare uid: gid from passwd (with the user's groups, as docker --user uid does) ...
		{"1001", User{UID: 1001, GID: 100, Groups: []uint32{100, 999, 2000}, Name: "builder", Home: "/home/builder"}},
		// ... else the same number and nothing else.
		{"4242", User{UID: 4242, GID: 4242, Groups: []uint32{}}},
		{"0", User{UID: 0, GID: 0, Groups: []uint32{0, 10}, Name: "root", Home: "/root"}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ResolveUser(tt.spec, passwd, group)
			if err != nil {
				t.Fatalf("ResolveUser(%q): %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ResolveUser(%q)\n got %+v\nwant %+v", tt.spec, got, tt.want)
			}
			if got.Groups == nil {
				t.Errorf("Groups is nil; want a non-nil slice so that root's groups are dropped")
			}
		})
	}
}

func TestResolveUserErrors(t *testing.T) {
	passwd := filepath.Join("testdata", "passwd")
	group := filepath.Join("testdata", "group")
	tests := []struct {
		spec, passwd, group string
		wantIn              string
	}{
		{"", passwd, group, "empty"},
		{"nobody-here", passwd, group, `user "nobody-here" not found in testdata/passwd`},
		{"agent:nogroup", passwd, group, `group "nogroup" not found`},
		{":1000", passwd, group, "want a user name"},
		{"1000:", passwd, group, "want a user name"},
		{"99999999999", passwd, group, "out of range"},
		{"1000:4294967295", passwd, group, "out of range"},
		{"agent", "testdata/missing-passwd", group, "does not exist"},
		{"nisuser", passwd, group, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			_, err := ResolveUser(tt.spec, tt.passwd, tt.group)
			if err == nil {
				t.Fatalf("ResolveUser(%q) succeeded; want error", tt.spec)
			}
			if !strings.Contains(err.Error(), "AZP_RUN_AS="+`"`+tt.spec+`"`) {
				t.Errorf("error %q does not name AZP_RUN_AS and the value", err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not contain %q", err, tt.wantIn)
			}
			if !errors.Is(err, exit.ErrConfig) || exit.Code(err) != exit.Usage {
				t.Errorf("error %q is not a configuration error", err)
			}
		})
	}
}

func TestResolveUserWithoutImageFiles(t *testing.T) {
	// Numeric specs work in an image without /etc/passwd (scratch, distroless).
	got, err := ResolveUser("1000", "testdata/none", "testdata/none")
	if err != nil {
		t.Fatal(err)
	}
	want := User{UID: 1000, GID: 1000, Groups: []uint32{}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
