//go:build linux

package register

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strings"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
)

// Files the registration writes into the agent root (HostContext.GetConfigFile:
// WellKnownConfigFile.Agent, Credentials, RSACredentials).
const (
	FileAgent       = ".agent"
	FileCredentials = ".credentials"
	FileKey         = ".credentials_rsaparams"
)

// Options describe one registration.
type Options struct {
	// Client is authenticated with the operator's credential (PAT or service principal token);
	// only this process ever holds it.
	Client *azdo.Client
	Dir    *Dir // the agent root, opened with OpenDir
	Owner  Owner
	Pool   string
	Name   string
	// Work is stored as workFolder; the listener combines a relative one with the agent root.
	Work string
	// Version is the agent package's version (TaskAgent.version, BuildConstants.AgentPackage.Version).
	Version string
	Logger  *slog.Logger
	// KeyBits is the RSA key size; 0 means 2048, as RSAFileKeyManager.CreateKey.
	KeyBits int
}

// Result is what was registered.
type Result struct {
	Settings Settings
	Replaced bool // an agent of that name existed and got the new key, keeping its id
}

// Register adds or replaces the agent over REST and writes `.credentials_rsaparams`,
// `.credentials` and `.agent`, in that order, the way `Agent.Listener configure --unattended
// --replace` does (src/Agent.Listener/Configuration/ConfigurationManager.cs, ConfigureAsync):
//
//  1. a new 2048-bit RSA key (RSAFileKeyManager.CreateKey);
//  2. the pool by name (ConfigurationProvider.GetPoolIdAndName);
//  3. the agent by name (GetAgentAsync); if present, UpdateExistingAgent + PUT (replace keeps the
//     id); otherwise CreateNewAgent + POST;
//  4. properties.ServerUrl from the answer, keeping the configured scheme://host:port;
//  5. the OAuth credential from authorization.clientId/authorizationUrl (UpdateCredentialData);
//  6. a test connection with an agent token, which catches a key the server did not take and
//     clock skew;
//  7. the files. `.agent` goes last: its existence means "configured".
//
// Nothing here starts a process; the credential stays in this one.
func Register(ctx context.Context, o Options) (Result, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bits := o.KeyBits
	if bits == 0 {
		bits = 2048
	}
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return Result{}, fmt.Errorf("generate the agent's RSA key: %w", err)
	}
	pool, err := o.Client.Pool(ctx, o.Pool)
	if err != nil {
		return Result{}, err
	}
	var reg azdo.RegisteredAgent
	replaced := false
	for attempt := 1; ; attempt++ {
		existing, err := o.Client.FindAgentForReplace(ctx, pool.ID, o.Name)
		if err != nil {
			return Result{}, err
		}
		if existing != nil {
			reg, err = o.Client.ReplaceAgent(ctx, pool.ID, updateExisting(existing, key, o))
			replaced = true
		} else {
			reg, err = o.Client.AddAgent(ctx, pool.ID, newAgent(key, o))
			replaced = false
		}
		// Another container added the same name between our lookup and our POST: look again
		// and replace it, as --replace would have on the next run.
		if errors.Is(err, azdo.ErrAgentExists) && attempt < 3 {
			log.Info("agent name taken meanwhile; replacing it", "agent", o.Name, "pool", pool.Name)
			continue
		}
		if err != nil {
			return Result{}, err
		}
		break
	}
	serverURL := resolveServerURL(o.Client.URL(), reg.ServerURL)
	oauthURL := oauthEndpoint(serverURL, reg.AuthorizationURL)
	if err := o.Client.TestAgentConnection(ctx, serverURL, oauthURL, reg.AuthorizationURL, reg.ClientID, key); err != nil {
		return Result{}, fmt.Errorf("test the agent's connection with its new key (agent %d in pool %s): %w", reg.ID, pool.Name, err)
	}

	settings := Settings{AgentID: reg.ID, AgentName: o.Name, PoolID: pool.ID, PoolName: pool.Name,
		ServerURL: serverURL, WorkFolder: o.Work}
	creds := Credentials{Scheme: "OAuth", Data: map[string]string{
		"clientId":         reg.ClientID,
		"authorizationUrl": reg.AuthorizationURL,
		"oauthEndpointUrl": oauthURL,
	}}
	if err := writeAll(o.Dir, o.Owner, key, creds, settings); err != nil {
		return Result{}, err
	}
	log.Info("agent registered", "agent", o.Name, "id", reg.ID, "pool", pool.Name, "replaced", replaced)
	return Result{Settings: settings, Replaced: replaced}, nil
}

// writeAll writes the three files. `.agent` is removed first and written last, so an interrupted
// write leaves an agent that is not configured rather than one with a mismatched key.
func writeAll(d *Dir, o Owner, key *rsa.PrivateKey, creds Credentials, settings Settings) error {
	if err := d.Remove(FileAgent); err != nil {
		return err
	}
	keyData, err := EncodeKey(key)
	if err != nil {
		return err
	}
	credData, err := marshal(creds)
	if err != nil {
		return err
	}
	agentData, err := marshal(settings)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{FileKey, keyData}, {FileCredentials, credData}, {FileAgent, agentData}} {
		if err := d.WriteFile(f.name, f.data, o); err != nil {
			return err
		}
	}
	return d.Sync()
}

// capabilities are the system capabilities sent with the registration: AgentCapabilitiesProvider's
// Agent.* values only. The real configure also sends every environment variable
// (EnvironmentCapabilitiesProvider), which here would include the credential; the listener scans
// and reports its own capabilities at every session (MessageListener.CreateSessionAsync), so
// nothing is lost.
func capabilities(o Options) map[string]string {
	arch := map[string]string{"amd64": "X64", "arm64": "ARM64", "arm": "ARM", "386": "X86"}[runtime.GOARCH]
	return map[string]string{
		"Agent.Name":           o.Name,
		"Agent.Version":        o.Version,
		"Agent.OS":             "Linux",
		"Agent.OSArchitecture": arch,
	}
}

func osDescription() string {
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		return "Linux " + strings.TrimSpace(string(b))
	}
	return "Linux"
}

// newAgent is ConfigurationManager.CreateNewAgent.
func newAgent(key *rsa.PrivateKey, o Options) *taskagent.TaskAgent {
	name, version, osd := o.Name, o.Version, osDescription()
	maxPar, state := 1, "Provisioned"
	caps := capabilities(o)
	return &taskagent.TaskAgent{
		Name:               &name,
		Authorization:      &taskagent.TaskAgentAuthorization{PublicKey: azdo.PublicKey(&key.PublicKey)},
		MaxParallelism:     &maxPar,
		ProvisioningState:  &state,
		Version:            &version,
		OsDescription:      &osd,
		SystemCapabilities: &caps,
	}
}

// updateExisting is ConfigurationManager.UpdateExistingAgent: the server's object with a new
// authorization (public key only), version, OS description and merged system capabilities.
func updateExisting(a *taskagent.TaskAgent, key *rsa.PrivateKey, o Options) *taskagent.TaskAgent {
	version, osd := o.Version, osDescription()
	a.Authorization = &taskagent.TaskAgentAuthorization{PublicKey: azdo.PublicKey(&key.PublicKey)}
	a.Version = &version
	a.OsDescription = &osd
	caps := map[string]string{}
	if a.SystemCapabilities != nil {
		for k, v := range *a.SystemCapabilities {
			caps[k] = v
		}
	}
	for k, v := range capabilities(o) {
		caps[k] = v
	}
	a.SystemCapabilities = &caps
	return a
}

// resolveServerURL is ConfigureAsync's handling of properties.ServerUrl: the server's path, with
// the configured scheme://host:port when those differ.
func resolveServerURL(configured, fromServer string) string {
	if fromServer == "" {
		return configured
	}
	in, err1 := url.Parse(configured)
	srv, err2 := url.Parse(fromServer)
	if err1 != nil || err2 != nil {
		return configured
	}
	if !strings.EqualFold(in.Scheme, srv.Scheme) || !strings.EqualFold(in.Host, srv.Host) {
		in.Path, in.RawPath = srv.Path, srv.RawPath
		return in.String()
	}
	return fromServer
}

// oauthEndpoint is UpdateCredentialData's oauthEndpointUrl: the authorizationUrl, with the
// configured scheme://host:port for servers that are not Azure DevOps Services (a TFS whose public
// URL differs from the URL the agent uses). For Services the SPS and TFS hosts differ by design.
func oauthEndpoint(serverURL, authorizationURL string) string {
	cfg, err1 := url.Parse(serverURL)
	au, err2 := url.Parse(authorizationURL)
	if err1 != nil || err2 != nil || hosted(cfg.Hostname()) {
		return authorizationURL
	}
	if !strings.EqualFold(cfg.Scheme, au.Scheme) || !strings.EqualFold(cfg.Host, au.Host) {
		au.Scheme, au.Host = cfg.Scheme, cfg.Host
	}
	return au.String()
}

// hosted approximates ServerUtil.DetermineDeploymentType for Azure DevOps Services URLs.
func hosted(host string) bool {
	h := strings.ToLower(host)
	return h == "dev.azure.com" || strings.HasSuffix(h, ".visualstudio.com") || strings.HasSuffix(h, ".vsrm.visualstudio.com")
}
