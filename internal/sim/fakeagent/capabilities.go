package fakeagent

import (
	"os"
	"runtime"
	"strings"
)

// systemCapabilities is what the listener reports when it creates a session, as the real one does
// at every start (MessageListener.CreateSessionAsync → CapabilitiesManager): every environment
// variable except those named in VSO_AGENT_IGNORE (EnvironmentCapabilitiesProvider), then the
// Agent.* capabilities (AgentCapabilitiesProvider: Agent.Name, Agent.Version, Agent.OS,
// Agent.OSArchitecture, Agent.ComputerName).
func systemCapabilities(name, version string) map[string]string {
	caps := map[string]string{}
	ignore := map[string]bool{}
	for _, k := range strings.Split(os.Getenv("VSO_AGENT_IGNORE"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			ignore[strings.ToLower(k)] = true
		}
	}
	for _, kv := range os.Environ() {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k != "" && !ignore[strings.ToLower(k)] {
			caps[k] = v
		}
	}
	arch := "X64"
	if runtime.GOARCH == "arm64" {
		arch = "ARM64"
	}
	host, _ := os.Hostname()
	caps["Agent.Name"] = name
	caps["Agent.Version"] = version
	caps["Agent.OS"] = "Linux"
	caps["Agent.OSArchitecture"] = arch
	caps["Agent.ComputerName"] = host
	return caps
}
