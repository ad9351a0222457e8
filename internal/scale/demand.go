package scale

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Capabilities are an agent's capabilities: name → value, names compared without case (the
// service keeps capabilities in a case-insensitive dictionary).
type Capabilities map[string]string

// Get finds a capability by name, ignoring case.
func (c Capabilities) Get(name string) (string, bool) {
	if v, ok := c[name]; ok {
		return v, true
	}
	for k, v := range c {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// ParseCapabilities reads AZP_SCALE_CAPABILITIES: `name=value,name` (a name without a value gets
// "true"). Names must be usable as environment variable names, because that is how the agents get
// them: as variables of the agent container, which the listener reports as system capabilities.
func ParseCapabilities(s string) (Capabilities, error) {
	caps := Capabilities{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok {
			value = "true"
		}
		if !envName.MatchString(name) {
			return nil, fmt.Errorf("capability %q: a name is letters, digits, '_' and '.', not starting with a digit (it becomes an environment variable of the agent container)", name)
		}
		if strings.HasPrefix(strings.ToLower(name), "agent.") || strings.HasPrefix(strings.ToUpper(name), "AZP_") {
			return nil, fmt.Errorf("capability %q: Agent.* capabilities come from the agent itself and AZP_* variables are the entrypoint's settings", name)
		}
		if _, dup := caps.Get(name); dup {
			return nil, fmt.Errorf("capability %q listed twice", name)
		}
		caps[name] = value
	}
	return caps, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// Names lists the capability names, sorted.
func (c Capabilities) Names() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// demandRE is the service's demand grammar (DistributedTask WebApi Demand.TryParse:
// `^(?<name>\S+)(\s+\-(?<opcode>\S+)\s+(?<value>.*))?$`).
var demandRE = regexp.MustCompile(`^(\S+)(?:\s+-(\S+)\s+(.*))?$`)

// Meets reports whether the capabilities satisfy every demand, by Azure DevOps's rule: a bare
// name must be present (DemandExists); `name -equals value` compares values without case
// (DemandEquals); `name -gtVersion v` holds when v ≤ the capability's version (DemandMinimumVersion,
// versions compared as System.Version). A demand it cannot parse, or with another operator, is
// not met: the scaler never launches for a job it cannot be sure to serve.
func (c Capabilities) Meets(demands []string) bool {
	for _, d := range demands {
		if !c.meets(d) {
			return false
		}
	}
	return true
}

func (c Capabilities) meets(d string) bool {
	m := demandRE.FindStringSubmatch(strings.TrimSpace(d))
	if m == nil {
		return false
	}
	have, ok := c.Get(m[1])
	if !ok {
		return false
	}
	switch m[2] {
	case "":
		return true
	case "equals":
		return strings.EqualFold(have, m[3])
	case "gtVersion":
		want, ok := parseVersion(m[3])
		if !ok {
			return false
		}
		got, ok := parseVersion(have)
		return ok && compareVersions(want, got) <= 0
	}
	return false
}

// parseVersion follows DemandMinimumVersion.ParseVersion: cut a "-suffix", then
// System.Version.TryParse (2 to 4 non-negative integers; missing parts are -1, so 1.2 < 1.2.0).
func parseVersion(s string) ([4]int, bool) {
	v := [4]int{-1, -1, -1, -1}
	if i := strings.IndexByte(s, '-'); i > 0 {
		s = s[:i]
	}
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 || len(parts) > 4 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func compareVersions(a, b [4]int) int {
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}
