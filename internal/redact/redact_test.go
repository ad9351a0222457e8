package redact

import "testing"

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                                     "",
		"proxy:3128":                           "proxy:3128",
		"https://dev.azure.com/acme":           "https://dev.azure.com/acme",
		"https://h/x.tar.gz":                   "https://h/x.tar.gz",
		"user:pw@host:1":                       "***@host:1",
		"<pat>@dev.azure.com/acme":             "***@dev.azure.com/acme",
		"https://tok@h/x":                      "https://***@h/x",
		"https://u:p@h/x.tar.gz?sig=s&se=1#f":  "https://***@h/x.tar.gz?…",
		"a@b@host/p?q=1#f":                     "***@host/p?…",
		"https://u:p@h/x@y":                    "https://***@y",
		"https://h/x?sig=1@z":                  "https://***@z",
		"user:pa://ss@host":                    "***@host",
		"http://u:pa/ss@h:bad/x?sig=s":         "http://***@h:bad/x?…",
		"u:pa://ss@h:bad/x#f":                  "***@h:bad/x#…",
		"https://dev.azure.com/acme?token=abc": "https://dev.azure.com/acme?…",
		"https://h/x?":                         "https://h/x?…",
		"https://h/x#frag":                     "https://h/x#…",
		"dev.azure.com/acme#tok":               "dev.azure.com/acme#…",
		"1http://u:p@h":                        "***@h",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUserinfo(t *testing.T) {
	for in, want := range map[string]string{
		"":                               "",
		"plain value":                    "plain value",
		"user:pw@host":                   "user:pw@host",
		"got https://u:p@h/x: refused":   "got https://***@h/x: refused",
		"https://u:p/w#x@h/path":         "https://***@h/path",
		"https://dev.azure.com/acme?x=1": "https://dev.azure.com/acme?x=1",
	} {
		if got := Userinfo(in); got != want {
			t.Errorf("Userinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRawUserinfo(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"https://dev.azure.com/acme", "", false},
		{"https://u:p%21ss@h/x", "u:p%21ss", true},
		{"user:pw@proxy:3128", "user:pw", true},
		{"https://h/x@y", "", false},
		{"https://a@b@h?q", "a@b", true},
	} {
		got, ok := RawUserinfo(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("RawUserinfo(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
