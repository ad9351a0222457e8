package ecs

import "strings"

// MaxAgentName is the longest agent name the entrypoint derives.
const MaxAgentName = 64

// AgentName derives the default agent name on ECS: <prefix><task id>-<container name>, at most
// 64 characters. The task ID is what makes the name unique (and lets prune and people find the
// task), so it is kept whole: the container name is cut first, then the prefix. The name never
// ends in '-'.
func AgentName(prefix, taskID, containerName string) string {
	p, id, c := []rune(prefix), []rune(taskID), []rune(containerName)
	if len(id) == 0 { // not expected on ECS; no separator without an ID
		name := append(p, c...)
		if len(name) > MaxAgentName {
			name = name[:MaxAgentName]
		}
		return trimDash(string(name))
	}
	if len(id) >= MaxAgentName {
		// Not an ECS task ID (those are 32 characters); still return a usable name.
		return trimDash(string(id[:MaxAgentName]))
	}
	if room := MaxAgentName - len(p) - len(id) - 1; len(c) > 0 && room > 0 {
		if len(c) > room {
			c = c[:room]
		}
		if name := trimDash(string(c)); name != "" {
			return string(p) + string(id) + "-" + name
		}
	}
	if room := MaxAgentName - len(id); len(p) > room {
		p = p[:room]
	}
	return trimDash(string(p) + string(id))
}

func trimDash(s string) string { return strings.TrimRight(s, "-") }
