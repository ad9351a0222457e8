package fakeagent

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// Options the real listener knows (CommandSettings.cs / Constants.cs), lower-cased. Flags take no
// value; everything else takes the next argument.
var knownFlags = map[string]bool{
	"unattended": true, "replace": true, "accepteula": true, "acceptteeeula": true, "once": true,
	"help": true, "version": true, "commit": true, "diagnostics": true, "debug": true,
	"disableloguploads": true, "restreamlogstofiles": true, "alwaysextracttask": true,
	"sslskipcertvalidation": true, "usebasicauthforproxy": true, "gituseschannel": true,
	"runasservice": true, "runasautologon": true, "overwriteautologon": true, "norestart": true,
	"deploymentgroup": true, "deploymentpool": true, "environment": true,
	"adddeploymentgrouptags": true, "addvirtualmachineresourcetags": true,
	"enableservicesidtypeunrestricted": true, "preventservicestart": true,
}

var knownValues = map[string]bool{
	"url": true, "pool": true, "agent": true, "work": true, "auth": true, "token": true,
	"username": true, "password": true, "clientid": true, "tenantid": true, "clientsecret": true,
	"startuptype": true, "proxyurl": true, "proxyusername": true, "proxypassword": true,
	"sslcacert": true, "sslclientcert": true, "sslclientcertkey": true, "sslclientcertarchive": true,
	"sslclientcertpassword": true, "windowslogonaccount": true, "windowslogonpassword": true,
	"deploymentgroupname": true, "deploymentpoolname": true, "projectname": true,
	"collectionname": true, "machinegroupname": true, "deploymentgrouptags": true,
	"environmentname": true, "virtualmachineresourcetags": true, "monitorsocketaddress": true,
	"agentdirectory": true, "pipeline": true,
}

const inputPrefix = "VSTS_AGENT_INPUT_"

// command is a parsed command line plus the VSTS_AGENT_INPUT_* values taken from the environment.
type command struct {
	verb    string            // configure, remove, run, warmup, reauth
	flags   map[string]bool   // --flag given on the command line
	values  map[string]string // --name value given on the command line
	env     map[string]string // VSTS_AGENT_INPUT_<NAME>, lower-cased name
	unknown []string          // unrecognised arguments, for the warning
}

var verbs = map[string]bool{"configure": true, "remove": true, "run": true, "warmup": true, "reauth": true}

// parseCommand parses args (without argv[0]) and consumes VSTS_AGENT_INPUT_* from the process
// environment: the real listener deletes them from its own environment so that jobs never see them.
func parseCommand(args []string) *command {
	c := &command{verb: "run", flags: map[string]bool{}, values: map[string]string{}, env: map[string]string{}}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if v := strings.ToLower(args[0]); verbs[v] {
			c.verb = v
			args = args[1:]
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			c.unknown = append(c.unknown, a)
			continue
		}
		name := strings.ToLower(strings.TrimPrefix(a, "--"))
		switch {
		case knownFlags[name]:
			c.flags[name] = true
		case knownValues[name]:
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				c.values[name] = args[i+1]
				i++
			} else {
				c.values[name] = ""
			}
		default:
			c.unknown = append(c.unknown, a)
			// A value that follows an unknown option belongs to it.
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				c.unknown = append(c.unknown, args[i+1])
				i++
			}
		}
	}
	for _, kv := range os.Environ() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || len(k) <= len(inputPrefix) || !strings.EqualFold(k[:len(inputPrefix)], inputPrefix) {
			continue
		}
		c.env[strings.ToLower(k[len(inputPrefix):])] = v
		os.Unsetenv(k)
	}
	return c
}

// value returns the option from the command line, else from VSTS_AGENT_INPUT_<NAME>.
func (c *command) value(name string) string {
	if v, ok := c.values[name]; ok && v != "" {
		return v
	}
	return c.env[name]
}

// flag is true for --name on the command line or VSTS_AGENT_INPUT_<NAME>=true. The real agent parses
// booleans with bool.TryParse: only true/false count, so "1" or "Y" is false.
func (c *command) flag(name string) bool {
	if c.flags[name] {
		return true
	}
	return strings.EqualFold(strings.TrimSpace(c.env[name]), "true")
}

// warnUnknown prints the real listener's warning for unrecognised input; the command still runs.
func (c *command) warnUnknown(out *output) {
	if len(c.unknown) == 0 {
		return
	}
	u := append([]string(nil), c.unknown...)
	sort.Strings(u)
	out.line(fmt.Sprintf("Unrecognized command-line input arguments: '%s'. For usage refer to: .\\config.cmd --help or ./config.sh --help", strings.Join(u, ", ")))
}

const usage = `Commands:
 ./config.sh        Configures the agent
 ./config.sh remove Unconfigures the agent
 ./run.sh           Runs the agent interactively. Requires agent to be configured.

Options:
 --version          Prints the agent version
 --commit           Prints the agent commit
 --help             Prints the help for each command

config.sh Options:
 --unattended       Unattended configuration. You will not be prompted.
 --url <url>        URL of the server.
 --auth <type>      Authentication type: PAT, SP, Negotiate, ALT, Integrated.
 --token <token>    Personal access token (or VSTS_AGENT_INPUT_TOKEN).
 --clientid, --tenantid, --clientsecret   Service principal (--auth SP).
 --pool <pool>      Pool name for the agent to join.
 --agent <name>     Agent name.
 --work <dir>       Work directory where job data is stored.
 --replace          Replace the agent in a pool.
 --sslcacert <file> CA certificate file, relative to the agent root.

run Options:
 --once             Run one job, then exit.
 --startuptype <t>  service | manual | autostartup.

(fake agent: a test double built from azp-sim, not the Azure Pipelines agent)
`
