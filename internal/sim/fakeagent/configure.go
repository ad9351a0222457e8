package fakeagent

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// invalid prints the unattended-mode failure for a missing or invalid setting (PromptManager.cs).
func invalid(out *output, name string) int {
	out.errorf("Invalid configuration provided for %s. Terminating unattended configuration.", name)
	return ExitTerminatedError
}

// authorization resolves --auth and its credentials to an Authorization header value. It prints the
// failure itself and returns ok=false.
func authorization(ctx context.Context, cmd *command, out *output, hc *http.Client) (string, bool) {
	auth := strings.ToLower(cmd.value("auth"))
	if auth == "" {
		// The real default is PAT for https URLs with a dotted host, else Negotiate; the fake has no
		// Negotiate, so PAT it is.
		auth = "pat"
	}
	switch auth {
	case "pat":
		tok := cmd.value("token")
		if tok == "" {
			invalid(out, "token")
			return "", false
		}
		return azuredevops.CreateBasicAuthHeaderValue("VstsAgent", tok), true
	case "sp":
		id, tenant, secret := cmd.value("clientid"), cmd.value("tenantid"), cmd.value("clientsecret")
		for _, kv := range [][2]string{{"clientid", id}, {"tenantid", tenant}, {"clientsecret", secret}} {
			if kv[1] == "" {
				invalid(out, kv[0])
				return "", false
			}
		}
		tok, err := entraToken(ctx, hc, tenant, id, secret)
		if err != nil {
			out.errorf("Failed to get an access token for the service principal: %v", err)
			return "", false
		}
		return "Bearer " + tok, true
	default:
		out.errorf("Invalid configuration provided for auth. Terminating unattended configuration. (the fake agent supports PAT and SP, got %q)", cmd.value("auth"))
		return "", false
	}
}

func configure(cmd *command, root *agentRoot, out *output) int {
	if root.configured() {
		out.errorf("Cannot configure the agent because it is already configured. To reconfigure the agent, run 'config.cmd remove' or './config.sh remove' first.")
		return ExitTerminatedError
	}
	out.line("")
	out.line(">> Connect:")
	out.line("")
	serverURL := strings.TrimRight(cmd.value("url"), "/")
	if u, err := url.Parse(serverURL); serverURL == "" || err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return invalid(out, "url")
	}
	caCert := cmd.value("sslcacert")
	if caCert != "" {
		p := caCert
		if !filepath.IsAbs(p) {
			p = filepath.Join(root.dir, p) // relative to the agent root, not the working directory
		}
		if _, err := os.Stat(p); err != nil {
			return invalid(out, "sslcacert")
		}
	}
	skipTLS := cmd.flag("sslskipcertvalidation")
	tlsCfg, err := tlsConfig(root, caCert, skipTLS)
	if err != nil {
		out.errorf("An error occurred: %v", err)
		return ExitTerminatedError
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	hc := httpClient(tlsCfg, 100*time.Second)
	authz, ok := authorization(ctx, cmd, out, hc)
	if !ok {
		return ExitTerminatedError
	}
	out.line("Connecting to server ...")
	conn := newConnection(serverURL, authz, tlsCfg)
	if err := connectionData(ctx, conn); err != nil {
		out.errorf("An error occurred: %s", describe(err, serverURL))
		return ExitTerminatedError
	}
	client, err := taskagent.NewClient(ctx, conn)
	if err != nil {
		out.errorf("An error occurred: %s", describe(err, serverURL))
		return ExitTerminatedError
	}
	out.line("")
	out.line(">> Register Agent:")
	out.line("")
	poolName := cmd.value("pool")
	if poolName == "" {
		poolName = "default"
	}
	agentName := cmd.value("agent")
	if agentName == "" {
		agentName, _ = os.Hostname()
	}
	work := cmd.value("work")
	if work == "" {
		work = "_work"
	}
	automation := taskagent.TaskAgentPoolTypeValues.Automation
	pools, err := client.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{PoolName: &poolName, PoolType: &automation})
	if err != nil {
		out.errorf("An error occurred: %s", describe(err, serverURL))
		return ExitTerminatedError
	}
	if pools == nil || len(*pools) == 0 || (*pools)[0].Id == nil {
		out.errorf("Agent pool not found: '%s'", poolName)
		return ExitTerminatedError
	}
	poolID := *(*pools)[0].Id
	if n := (*pools)[0].Name; n != nil {
		poolName = *n
	}
	out.line("Scanning for tool capabilities.")
	out.line("Connecting to the server.")
	noCaps := false
	existing, err := client.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID, AgentName: &agentName, IncludeCapabilities: &noCaps})
	if err != nil {
		out.errorf("An error occurred: %s", describe(err, serverURL))
		return ExitTerminatedError
	}
	var existingID *int
	if existing != nil && len(*existing) > 0 {
		existingID = (*existing)[0].Id
	}
	if existingID != nil && !cmd.flag("replace") {
		out.errorf("Pool %s already contains an agent with name %s.", poolName, agentName)
		return ExitTerminatedError
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		out.errorf("An error occurred: generate RSA key: %v", err)
		return ExitTerminatedError
	}
	body := newTaskAgent(agentName, root, key)
	var added *taskagent.TaskAgent
	if existingID != nil {
		for attempt := 1; ; attempt++ { // the real agent retries the replace up to 3 times
			added, err = client.ReplaceAgent(ctx, taskagent.ReplaceAgentArgs{Agent: body, PoolId: &poolID, AgentId: existingID})
			if err == nil || attempt == 3 || statusOf(err) == http.StatusUnauthorized || statusOf(err) == http.StatusForbidden {
				break
			}
			time.Sleep(time.Second)
		}
	} else {
		added, err = client.AddAgent(ctx, taskagent.AddAgentArgs{Agent: body, PoolId: &poolID})
	}
	if err != nil {
		out.errorf("An error occurred: %s", describe(err, serverURL))
		return ExitTerminatedError
	}
	if added == nil || added.Id == nil || added.Authorization == nil || added.Authorization.ClientId == nil || added.Authorization.AuthorizationUrl == nil {
		out.errorf("An error occurred: the server's agent has no id or authorization (clientId, authorizationUrl)")
		return ExitTerminatedError
	}
	if existingID != nil {
		out.line("Successfully replaced the agent")
	} else {
		out.line("Successfully added the agent")
	}
	// OAuth test connection, which is where the real agent notices clock skew or a bad key.
	out.line("Testing agent connection.")
	authURL := *added.Authorization.AuthorizationUrl
	o := &oauth{hc: hc, clientID: added.Authorization.ClientId.String(), tokenURL: authURL, key: key}
	tok, err := o.get(ctx, true)
	if err == nil {
		err = connectionData(ctx, newConnection(serverURL, "Bearer "+tok, tlsCfg))
	}
	if err != nil {
		out.errorf("An error occurred: %s", describe(err, serverURL))
		return ExitTerminatedError
	}
	// Key first: a .agent without its key would make the agent look configured but unusable.
	if err := saveJSON(root.path(FileRSAParams), encodeRSA(key), 0o600); err != nil {
		out.errorf("An error occurred: %v", err)
		return ExitTerminatedError
	}
	creds := Credentials{Scheme: "OAuth", Data: map[string]string{
		"clientId":         added.Authorization.ClientId.String(),
		"authorizationUrl": authURL,
		"oauthEndpointUrl": authURL,
	}}
	if err := saveJSON(root.path(FileCredentials), creds, 0o600); err != nil {
		out.errorf("An error occurred: %v", err)
		return ExitTerminatedError
	}
	if caCert != "" || skipTLS {
		if err := saveJSON(root.path(FileCerts), certSettings{CACert: caCert, SkipServerCertValidation: skipTLS}, 0o600); err != nil {
			out.errorf("An error occurred: %v", err)
			return ExitTerminatedError
		}
	}
	settings := AgentSettings{
		AcceptTeeEula:     cmd.flag("acceptteeeula"),
		AgentID:           *added.Id,
		AgentName:         agentName,
		AlwaysExtractTask: cmd.flag("alwaysextracttask"),
		DisableLogUploads: cmd.flag("disableloguploads"),
		PoolID:            poolID,
		PoolName:          poolName,
		ServerURL:         serverURL,
		WorkFolder:        work,
	}
	if err := saveJSON(root.path(FileAgent), settings, 0o644); err != nil {
		out.errorf("An error occurred: %v", err)
		return ExitTerminatedError
	}
	out.stamped("Settings Saved.")
	return ExitSuccess
}

func newTaskAgent(name string, root *agentRoot, key *rsa.PrivateKey) *taskagent.TaskAgent {
	exp := big.NewInt(int64(key.E)).Bytes()
	mod := key.N.Bytes()
	maxPar := 1
	state := "Provisioned"
	osDesc := osDescription()
	version := root.version
	caps := map[string]string{"Agent.Name": name, "Agent.Version": version, "Agent.OS": "Linux", "Agent.OSArchitecture": runtime.GOARCH}
	return &taskagent.TaskAgent{
		Name:               &name,
		Version:            &version,
		OsDescription:      &osDesc,
		MaxParallelism:     &maxPar,
		ProvisioningState:  &state,
		SystemCapabilities: &caps,
		Authorization:      &taskagent.TaskAgentAuthorization{PublicKey: &taskagent.TaskAgentPublicKey{Exponent: &exp, Modulus: &mod}},
	}
}

func osDescription() string {
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		return "Linux " + strings.TrimSpace(string(b))
	}
	return runtime.GOOS
}

func remove(cmd *command, root *agentRoot, out *output) int {
	if _, err := os.Stat(root.path(FileService)); err == nil {
		out.errorf("Unconfigure service first")
		return ExitTerminatedError
	}
	if !root.configured() {
		out.line("Agent is not configured; nothing to remove.")
		return ExitSuccess
	}
	var s AgentSettings
	if err := loadJSON(root.path(FileAgent), &s); err != nil {
		out.errorf("An error occurred: %v", err)
		return ExitTerminatedError
	}
	certs := root.loadCerts()
	tlsCfg, err := tlsConfig(root, certs.CACert, certs.SkipServerCertValidation)
	if err != nil {
		out.errorf("An error occurred: %v", err)
		return ExitTerminatedError
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	hc := httpClient(tlsCfg, 100*time.Second)
	authz, ok := authorization(ctx, cmd, out, hc) // remove never uses the stored OAuth credentials
	if !ok {
		return ExitTerminatedError
	}
	out.line("")
	out.line(">> Remove Agent:")
	out.line("")
	out.line("Removing agent from the server")
	conn := newConnection(s.ServerURL, authz, tlsCfg)
	if err := connectionData(ctx, conn); err != nil {
		out.errorf("An error occurred: %s", describe(err, s.ServerURL))
		return ExitTerminatedError
	}
	client, err := taskagent.NewClient(ctx, conn)
	if err != nil {
		out.errorf("An error occurred: %s", describe(err, s.ServerURL))
		return ExitTerminatedError
	}
	poolID := s.PoolID
	agents, err := client.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID, AgentName: &s.AgentName})
	if err != nil {
		out.errorf("An error occurred: %s", describe(err, s.ServerURL))
		return ExitTerminatedError
	}
	if agents == nil || len(*agents) == 0 {
		out.line("Does not exist. Skipping Removing agent from the server")
	} else {
		id := s.AgentID // by the id in .agent, not the one the lookup found
		if err := client.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: &poolID, AgentId: &id}); err != nil {
			out.errorf("An error occurred: %s", describe(err, s.ServerURL))
			return ExitTerminatedError // before any local file is deleted, so a retry is safe
		}
		out.line("Succeeded: Removing agent from the server")
	}
	for _, f := range []struct{ file, label string }{
		{FileCredentials, ".credentials"},
		{FileRSAParams, ".credentials_rsaparams"},
		{FileCerts, ".certificates"},
		{FileAgent, ".agent"},
	} {
		if _, err := os.Stat(root.path(f.file)); err != nil {
			continue
		}
		out.line("Removing " + f.label)
		if err := os.Remove(root.path(f.file)); err != nil {
			out.errorf("An error occurred: %v", err)
			return ExitTerminatedError
		}
		out.line("Succeeded: Removing " + f.label)
	}
	return ExitSuccess
}
