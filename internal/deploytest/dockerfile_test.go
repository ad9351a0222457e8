package deploytest

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// binaryPath is where every image keeps the entrypoint; the task definition and
// compose health checks call it there.
const binaryPath = "/usr/local/bin/azp-entrypoint"

type dfInstr struct {
	cmd   string   // lower case: from, run, user, ...
	args  []string // Next chain
	json  bool     // exec (JSON) form
	flags []string
	orig  string
	line  int
}

type dfStage struct {
	name  string
	base  string
	flags []string
	ins   []dfInstr
}

func (s *dfStage) all(cmd string) []dfInstr {
	var out []dfInstr
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (s *dfStage) last(cmd string) *dfInstr {
	all := s.all(cmd)
	if len(all) == 0 {
		return nil
	}
	return &all[len(all)-1]
}

// parseDockerfile parses image/Dockerfile with BuildKit's own parser and splits
// it into stages; instructions before the first FROM (global ARGs) go to stage "".
func parseDockerfile(t *testing.T) (global *dfStage, stages []*dfStage) {
	t.Helper()
	path := filepath.Join(repoRoot(t), "image", "Dockerfile")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s: parser warning: %s", path, w.Short)
	}
	global = &dfStage{}
	cur := global
	for _, n := range res.AST.Children {
		in := dfInstr{cmd: strings.ToLower(n.Value), json: n.Attributes["json"], flags: n.Flags, orig: n.Original, line: n.StartLine}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		if in.cmd == "from" {
			st := &dfStage{base: in.args[0], flags: in.flags}
			if len(in.args) == 3 && strings.EqualFold(in.args[1], "as") {
				st.name = in.args[2]
			}
			stages = append(stages, st)
			cur = st
			continue
		}
		cur.ins = append(cur.ins, in)
	}
	return global, stages
}

func stageByName(t *testing.T, stages []*dfStage, name string) *dfStage {
	t.Helper()
	for _, s := range stages {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("image/Dockerfile has no stage %q", name)
	return nil
}

// dockerfileVolume returns the runtime image's single VOLUME path, which
// terraform's bind mode and compose must mount.
func dockerfileVolume(t *testing.T) string {
	t.Helper()
	_, stages := parseDockerfile(t)
	rt := stageByName(t, stages, "runtime")
	var paths []string
	for _, v := range rt.all("volume") {
		paths = append(paths, v.args...)
	}
	if len(paths) != 1 {
		t.Fatalf("runtime stage: want exactly one VOLUME (the shared work volume), got %v", paths)
	}
	return paths[0]
}

func TestDockerfileStages(t *testing.T) {
	_, stages := parseDockerfile(t)
	if len(stages) == 0 || stages[len(stages)-1].name != "runtime" {
		t.Fatalf("the last stage (the default target) must be the agent image \"runtime\"")
	}
	build := stageByName(t, stages, "build")
	if !regexp.MustCompile(`^golang:[^ ]*alpine`).MatchString(build.base) {
		t.Errorf("build stage base %q: want golang:<version>-alpine", build.base)
	}
	var goBuild string
	for _, r := range build.all("run") {
		if strings.Contains(r.orig, "./cmd/azp-entrypoint") {
			goBuild = r.orig
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "go build", "./cmd/azp-entrypoint", "./cmd/azp-sim"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("build stage must build the binary with %q", want)
		}
	}
	// The version is stamped into internal/version, where `version` reads it.
	if !strings.Contains(goBuild, "github.com/azp-entrypoint/azp-entrypoint/internal/version") {
		t.Errorf("build stage must stamp internal/version with -ldflags -X")
	}
	copiesRoot := false
	for _, c := range build.all("copy") {
		if slices.Equal(c.args, []string{".", "."}) {
			copiesRoot = true
		}
	}
	if !copiesRoot {
		t.Errorf("build stage must COPY . . (the build context is the repository root)")
	}

	sim := stageByName(t, stages, "sim")
	if ep := sim.last("entrypoint"); ep == nil || !ep.json || !slices.Equal(ep.args, []string{"/usr/local/bin/azp-sim"}) {
		t.Errorf("sim stage: ENTRYPOINT [\"/usr/local/bin/azp-sim\"] in exec form")
	}
	if u := sim.last("user"); u == nil || isRootUser(u.args[0]) {
		t.Errorf("sim stage must run as a non-root user")
	}
}

func isRootUser(u string) bool {
	name := strings.SplitN(u, ":", 2)[0]
	return name == "" || name == "root" || name == "0"
}

func TestDockerfileRuntime(t *testing.T) {
	global, stages := parseDockerfile(t)
	rt := stageByName(t, stages, "runtime")
	if !strings.HasPrefix(rt.base, "alpine:") {
		t.Errorf("runtime base %q: want alpine", rt.base)
	}

	ep := rt.last("entrypoint")
	if ep == nil || !ep.json || !slices.Equal(ep.args, []string{binaryPath}) {
		t.Fatalf("runtime: ENTRYPOINT must be [%q] in exec form (a shell would be PID 1), got %+v", binaryPath, ep)
	}
	if cmd := rt.last("cmd"); cmd != nil {
		t.Errorf("runtime: no CMD: `docker run IMAGE --once` passes flags to the entrypoint")
	}
	u := rt.last("user")
	if u == nil || isRootUser(u.args[0]) {
		t.Fatalf("runtime: the final USER must be the non-root agent user")
	}
	if u.args[0] != "agent" {
		t.Errorf("runtime: USER %q, want agent (AZP_RUN_AS defaults to it)", u.args[0])
	}
	if userIdx, epIdx := slices.IndexFunc(rt.ins, func(i dfInstr) bool { return i.cmd == "user" }), slices.IndexFunc(rt.ins, func(i dfInstr) bool { return i.cmd == "entrypoint" }); userIdx > epIdx {
		t.Errorf("runtime: USER must come before ENTRYPOINT")
	}

	hc := rt.last("healthcheck")
	if hc == nil || len(hc.args) < 1 || !strings.EqualFold(hc.args[0], "CMD") || !hc.json || !slices.Equal(hc.args[1:], healthCommand[1:]) {
		t.Errorf("runtime: HEALTHCHECK CMD %q in exec form, got %+v", healthCommand[1:], hc)
	}

	// The agent's runtime libraries and the tools self-update and scripts need.
	apk := ""
	for _, r := range rt.all("run") {
		if strings.Contains(r.orig, "apk add") {
			apk += r.orig + "\n"
		}
	}
	words := strings.Fields(strings.NewReplacer("\\", " ", ";", " ").Replace(apk))
	for _, pkg := range []string{"icu-libs", "libstdc++", "libgcc", "libssl3", "zlib", "ca-certificates", "bash", "git", "iputils"} {
		if !slices.Contains(words, pkg) {
			t.Errorf("runtime: apk add must install %s", pkg)
		}
	}
	for _, opt := range []string{"INSTALL_DOCKER_CLI", "INSTALL_AZURE_CLI"} {
		if !strings.Contains(apk, "$"+opt) {
			t.Errorf("runtime: optional tool switch %s is not used by the install step", opt)
		}
	}

	// The agent user: fixed uid, same as the task definition and EFS access point.
	uid := ""
	for _, r := range rt.all("run") {
		if m := regexp.MustCompile(`adduser\b[^;]*-u\s+(\d+)[^;]*\bagent\b`).FindStringSubmatch(r.orig); m != nil {
			uid = m[1]
		}
	}
	if uid == "" || uid == "0" {
		t.Fatalf("runtime: adduser must create the agent user with a fixed non-root uid")
	}
	m := loadModule(t, terraformDir(t))
	c := m.plan(t, baseVars(nil))
	if tfUID := c.local(t, "agent_uid").AsBigFloat().String(); tfUID != uid {
		t.Errorf("terraform local.agent_uid = %s but the image's agent uid is %s", tfUID, uid)
	}

	// Agent directory and volumes owned by the agent.
	owned := false
	for _, r := range rt.all("run") {
		if strings.Contains(r.orig, "chown") && strings.Contains(r.orig, "agent:agent") && strings.Contains(r.orig, "/azp") {
			owned = true
		}
	}
	if !owned {
		t.Errorf("runtime: /azp must be chowned to agent:agent")
	}
	if vol := dockerfileVolume(t); vol != "/azp/work" {
		t.Errorf("runtime: VOLUME %s, want /azp/work", vol)
	}
	if wd := rt.last("workdir"); wd == nil || wd.args[0] != "/azp/agent" {
		t.Errorf("runtime: WORKDIR /azp/agent (the default AZP_AGENT_DIR)")
	}

	// Optional baked agent, installed by the binary itself as the agent user.
	var bake *dfInstr
	for i, in := range rt.ins {
		if in.cmd == "run" && strings.Contains(in.orig, "install --version \"$AGENT_VERSION\" --dir /azp/agent") {
			bake = &rt.ins[i]
			if !strings.Contains(in.orig, `-n "$AGENT_VERSION"`) {
				t.Errorf("runtime: the agent is baked only when AGENT_VERSION is set")
			}
			if ui := slices.IndexFunc(rt.ins, func(x dfInstr) bool { return x.cmd == "user" }); ui > i {
				t.Errorf("runtime: bake the agent after USER agent so the agent owns it")
			}
		}
	}
	if bake == nil {
		t.Errorf("runtime: no RUN azp-entrypoint install --version \"$AGENT_VERSION\" --dir /azp/agent")
	}
	args := argDefaults(global, rt)
	if v, ok := args["AGENT_VERSION"]; !ok || v != "" {
		t.Errorf("runtime: ARG AGENT_VERSION must exist with an empty default (download at start), got %q", v)
	}

	labels := map[string]bool{}
	for _, l := range rt.all("label") {
		for i := 0; i+1 < len(l.args); i += 3 {
			labels[l.args[i]] = true
		}
	}
	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.licenses"} {
		if !labels[l] {
			t.Errorf("runtime: OCI label %s missing", l)
		}
	}
}

// argDefaults collects the ARG defaults visible in a stage (global ARGs included).
func argDefaults(stages ...*dfStage) map[string]string {
	out := map[string]string{}
	for _, s := range stages {
		for _, a := range s.all("arg") {
			for _, kv := range a.args {
				k, v, _ := strings.Cut(kv, "=")
				out[k] = strings.Trim(v, `"'`)
			}
		}
	}
	return out
}

var secretName = regexp.MustCompile(`(?i)(token|secret|passw|credential|private|apikey|api_key|access_key|_pat$|^pat$)`)

func TestDockerfileNoSecrets(t *testing.T) {
	global, stages := parseDockerfile(t)
	all := append([]*dfStage{global}, stages...)
	defs := settings(t)
	env := map[string]string{}
	for _, s := range all {
		for _, in := range s.ins {
			switch in.cmd {
			case "arg":
				for _, kv := range in.args {
					k, _, _ := strings.Cut(kv, "=")
					if secretName.MatchString(k) {
						t.Errorf("line %d: ARG %s looks like a secret: build arguments stay in the image history", in.line, k)
					}
					if d, ok := defs[k]; ok && d.Secret {
						t.Errorf("line %d: ARG %s is a secret setting", in.line, k)
					}
				}
			case "env":
				for i := 0; i+1 < len(in.args); i += 3 {
					k := in.args[i]
					env[k] = in.args[i+1]
					if secretName.MatchString(k) {
						t.Errorf("line %d: ENV %s looks like a secret", in.line, k)
					}
				}
			case "add":
				for _, a := range in.args {
					if strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://") {
						t.Errorf("line %d: ADD from a URL is unverified; download with a checksum", in.line)
					}
				}
			case "copy":
				for _, a := range in.args {
					if regexp.MustCompile(`(^|/)(\.env|\.secrets|.*\.tfstate.*|.*\.pem|.*\.key)$`).MatchString(a) {
						t.Errorf("line %d: COPY %s brings a secret into a layer", in.line, a)
					}
				}
			case "run":
				for _, f := range in.flags {
					if strings.Contains(f, "type=secret") {
						continue // BuildKit secret mounts never reach a layer: allowed
					}
				}
				if regexp.MustCompile(`(?i)(AZP_TOKEN|AZP_CLIENTSECRET)=`).MatchString(in.orig) {
					t.Errorf("line %d: RUN sets a credential", in.line)
				}
			}
		}
	}
	checkEnvironment(t, "image/Dockerfile ENV", env)
}

func TestDockerignore(t *testing.T) {
	// BuildKit reads <Dockerfile>.dockerignore next to the Dockerfile first, so
	// the repository-root build context never carries local secrets.
	path := filepath.Join(repoRoot(t), "image", "Dockerfile.dockerignore")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v: the build context is the repository root and needs an ignore file", err)
	}
	defer f.Close()
	var patterns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	for _, want := range []string{".env", ".secrets", ".git", "**/*.tfstate*", "**/.terraform", "**/*.tfvars", ".tools"} {
		if !slices.Contains(patterns, want) {
			t.Errorf("%s must exclude %s", path, want)
		}
	}
	for _, p := range patterns {
		if strings.HasPrefix(p, "!") && (strings.Contains(p, "env") || strings.Contains(p, "secret")) {
			t.Errorf("%s re-includes %s", path, p)
		}
	}
}

func TestImageReadme(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "image", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"COPY --from=", binaryPath, "ENTRYPOINT [\"" + binaryPath + "\"]", "AGENT_VERSION", "azp-entrypoint health"} {
		if !strings.Contains(s, want) {
			t.Errorf("image/README.md must show %q", want)
		}
	}
}
