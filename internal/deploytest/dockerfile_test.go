package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
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
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "image", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// A syntax directive makes BuildKit pull a frontend image: no build without a registry.
	if regexp.MustCompile(`(?mi)^#\s*syntax\s*=`).Match(raw) {
		t.Errorf("image/Dockerfile: no `# syntax=` directive (BuildKit's built-in frontend builds it offline)")
	}
	global, stages := parseDockerfile(t)
	if len(stages) == 0 || stages[len(stages)-1].name != "runtime" {
		t.Fatalf("the last stage (the default target) must be the agent image \"runtime\"")
	}
	args := argDefaults(global)
	if !strings.HasPrefix(args["BASE_IMAGE"], "alpine:") {
		t.Errorf("global ARG BASE_IMAGE=%q: Alpine is the documented default base", args["BASE_IMAGE"])
	}
	if args["BIN_DIR"] != "bin" {
		t.Errorf("global ARG BIN_DIR=%q: the default is make build's bin/", args["BIN_DIR"])
	}
	// The binaries are prebuilt (make build), not compiled in the image build.
	bins := stageByName(t, stages, "binaries")
	if bins.base != "scratch" {
		t.Errorf("binaries stage: FROM scratch, got %s", bins.base)
	}
	if c := bins.last("copy"); c == nil || !slices.Equal(c.args, []string{"${BIN_DIR}/", "/"}) {
		t.Errorf("binaries stage: COPY ${BIN_DIR}/ /")
	}
	for _, st := range stages {
		for _, r := range st.all("run") {
			if strings.Contains(r.orig, "go build") {
				t.Errorf("stage %s compiles Go: the image takes prebuilt static binaries from BIN_DIR", st.name)
			}
		}
	}

	sim := stageByName(t, stages, "sim")
	if sim.base != "${BASE_IMAGE}" {
		t.Errorf("sim stage: FROM ${BASE_IMAGE}, got %s", sim.base)
	}
	if c := sim.last("copy"); c == nil || !slices.Contains(c.flags, "--from=binaries") || c.args[0] != "/azp-sim-linux-${TARGETARCH}" {
		t.Errorf("sim stage: COPY --from=binaries /azp-sim-linux-${TARGETARCH}")
	}
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
	if rt.base != "${BASE_IMAGE}" {
		t.Errorf("runtime base %q: want ${BASE_IMAGE} (alpine by default)", rt.base)
	}
	if c := rt.last("copy"); c == nil || !slices.Contains(c.flags, "--from=binaries") ||
		!slices.Equal(c.args, []string{"/azp-entrypoint-linux-${TARGETARCH}", binaryPath}) {
		t.Errorf("runtime: COPY --from=binaries /azp-entrypoint-linux-${TARGETARCH} %s", binaryPath)
	}

	ep := rt.last("entrypoint")
	if ep == nil || !ep.json || !slices.Equal(ep.args, []string{binaryPath}) {
		t.Fatalf("runtime: ENTRYPOINT must be [%q] in exec form (a shell would be PID 1), got %+v", binaryPath, ep)
	}
	if cmd := rt.last("cmd"); cmd != nil {
		t.Errorf("runtime: no CMD: `docker run IMAGE --once` passes flags to the entrypoint")
	}
	// Decision 1: the entrypoint starts as root and drops the agent and its jobs to `agent`.
	u := rt.last("user")
	if u == nil || !isRootUser(u.args[0]) {
		t.Errorf("runtime: the final USER must be root (0:0): the entrypoint drops the agent to AZP_RUN_AS")
	}
	env := map[string]string{}
	for _, e := range rt.all("env") {
		for i := 0; i+1 < len(e.args); i += 3 {
			env[e.args[i]] = e.args[i+1]
		}
	}
	if env["AZP_RUN_AS"] != "agent" {
		t.Errorf("runtime: ENV AZP_RUN_AS=agent, got %q", env["AZP_RUN_AS"])
	}

	hc := rt.last("healthcheck")
	if hc == nil || len(hc.args) < 1 || !strings.EqualFold(hc.args[0], "CMD") || !hc.json || !slices.Equal(hc.args[1:], healthCommand[1:]) {
		t.Errorf("runtime: HEALTHCHECK CMD %q in exec form, got %+v", healthCommand[1:], hc)
	}

	// One OS-package step for Alpine (apk) and Debian/Ubuntu (apt-get) bases.
	pkgs := ""
	for _, r := range rt.all("run") {
		if strings.Contains(r.orig, "apk add") {
			pkgs = r.orig
		}
	}
	words := strings.Fields(strings.NewReplacer("\\", " ", ";", " ").Replace(pkgs))
	for _, pkg := range []string{"icu-libs", "libstdc++", "libgcc", "libssl3", "zlib", "ca-certificates", "bash", "git", "iputils", "krb5-libs"} {
		if !slices.Contains(words, pkg) {
			t.Errorf("runtime: apk add must install %s", pkg)
		}
	}
	// Debian/Ubuntu: the packages checked (and installed when missing) one by one, plus ICU and
	// OpenSSL, whose package names carry a version.
	var aptWords []string
	if m := regexp.MustCompile(`for p in ([^;]+); do`).FindStringSubmatch(pkgs); m != nil {
		aptWords = strings.Fields(m[1])
	}
	for _, pkg := range []string{"bash", "ca-certificates", "git", "iputils-ping", "libkrb5-3", "libstdc++6", "zlib1g", "tzdata", "passwd", "libcap2-bin"} {
		if !slices.Contains(aptWords, pkg) {
			t.Errorf("runtime: the apt-get branch of the package step must install %s", pkg)
		}
	}
	for _, pat := range []string{"'libicu[0-9]*'", "'libssl3*'"} {
		if !strings.Contains(pkgs, pat) {
			t.Errorf("runtime: the apt-get branch must look for %s", pat)
		}
	}
	if !strings.Contains(pkgs, "apt-get install") {
		t.Errorf("runtime: the package step must handle Debian/Ubuntu bases (apt-get)")
	}
	for _, opt := range []string{"INSTALL_DOCKER_CLI", "INSTALL_AZURE_CLI"} {
		if !strings.Contains(pkgs, "$"+opt) {
			t.Errorf("runtime: optional tool switch %s is not used by the install step", opt)
		}
	}

	// The agent user: fixed uid, same as the task definition and EFS access point, made with
	// useradd (Debian/Ubuntu) or adduser (Alpine).
	uids := map[string]bool{}
	for _, r := range rt.all("run") {
		for _, re := range []string{`adduser\b[^;]*-u\s+(\d+)[^;]*\bagent\b`, `useradd\b[^;]*-u\s+(\d+)[^;]*\bagent\b`} {
			if m := regexp.MustCompile(re).FindStringSubmatch(r.orig); m != nil {
				uids[m[1]] = true
			}
		}
	}
	if len(uids) != 1 || uids["0"] {
		t.Fatalf("runtime: useradd and adduser must create the agent user with one fixed non-root uid, got %v", uids)
	}
	var uid string
	for u := range uids {
		uid = u
	}
	m := loadModule(t, terraformDir(t))
	c := m.plan(t, baseVars(nil))
	if tfUID := c.local(t, "agent_uid").AsBigFloat().String(); tfUID != uid {
		t.Errorf("terraform local.agent_uid = %s but the image's agent uid is %s", tfUID, uid)
	}

	// Decision 2: /azp and the agent tree are root's; work directories and _diag the agent's.
	var dirs string
	for _, r := range rt.all("run") {
		dirs += r.orig + "\n"
	}
	for _, want := range []string{
		"install -d -o 0 -g 0 -m 0755 /azp /azp/agent",
		"install -d -o 1000 -g 1000 -m 0755 /azp/work",
		"install -d -o 1000 -g 1000 -m 0755 /azp/agent/_diag /azp/agent/_work",
	} {
		if !strings.Contains(dirs, want) {
			t.Errorf("runtime: %q missing (ownership decided in 'Secrets stay in PID 1')", want)
		}
	}
	if strings.Contains(dirs, "chown -R agent") {
		t.Errorf("runtime: /azp must not be handed to the agent user")
	}
	if !strings.Contains(dirs, "-perm -4000") || !strings.Contains(dirs, "setcap -r") {
		t.Errorf("runtime: setuid/setgid bits and file capabilities must be stripped")
	}
	if vol := dockerfileVolume(t); vol != "/azp/work" {
		t.Errorf("runtime: VOLUME %s, want /azp/work", vol)
	}
	if wd := rt.last("workdir"); wd == nil || wd.args[0] != "/azp/agent" {
		t.Errorf("runtime: WORKDIR /azp/agent (the default AZP_AGENT_DIR)")
	}

	// Optional baked agent, installed by the binary itself, as root, from BIN_DIR for file://.
	var bake *dfInstr
	for i, in := range rt.ins {
		if in.cmd == "run" && strings.Contains(in.orig, "install --version \"$AGENT_VERSION\" --dir /azp/agent") {
			bake = &rt.ins[i]
			if !strings.Contains(in.orig, `-n "$AGENT_VERSION"`) {
				t.Errorf("runtime: the agent is baked only when AGENT_VERSION is set")
			}
			if !slices.Contains(in.flags, "--mount=type=bind,from=binaries,target=/mnt/bin") {
				t.Errorf("runtime: the bake step mounts BIN_DIR at /mnt/bin (file:// mirrors), flags %v", in.flags)
			}
			for _, x := range rt.ins[:i] {
				if x.cmd == "user" && !isRootUser(x.args[0]) {
					t.Errorf("runtime: the agent is baked as root (the tree stays root's), not as %s", x.args[0])
				}
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
	// BuildKit reads <Dockerfile>.dockerignore next to the Dockerfile first, so the
	// repository-root build context lets in only the binary directories, never local secrets.
	path := filepath.Join(repoRoot(t), "image", "Dockerfile.dockerignore")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v: the build context is the repository root and needs an ignore file", err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".env", ".secrets/azp-token", "terraform/terraform.tfstate", "terraform/prod.tfvars",
		".git/config", ".tools/bin/staticcheck", "cmd/azp-entrypoint/main.go", "internal/sim/sim.go",
		"bin/.env", "dist/x/.secrets/t", "bin/key.pem", "bin/azp-entrypoint.test", "image/demo/sim-token"} {
		if ok, err := pm.MatchesOrParentMatches(p); err != nil || !ok {
			t.Errorf("%s lets %s into the build context", path, p)
		}
	}
	for _, p := range []string{"bin/azp-entrypoint-linux-amd64", "bin/azp-sim-linux-arm64",
		"dist/containertest/azp-entrypoint-linux-amd64", "dist/containertest/agent-mirror/vsts-agent-linux-x64-4.260.0.tar.gz"} {
		if ok, err := pm.MatchesOrParentMatches(p); err != nil || ok {
			t.Errorf("%s keeps %s (a BIN_DIR file the image needs) out of the build context", path, p)
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
