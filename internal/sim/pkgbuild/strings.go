package pkgbuild

import "encoding/json"

// The localized strings the fake listener prints, with the real keys and texts of the agent's
// src/Misc/layoutbin/<culture>/strings.json (microsoft/azure-pipelines-agent), limited to the
// messages a supervisor could observe. StringUtil.EnsureLoaded (src/Agent.Sdk/Util/StringUtil.cs)
// loads en-US first and then the current culture's file over it, from the directory of the entry
// assembly (bin/). Generated from the real files; only the keys listed here are shipped.

// Cultures lists the bin/<culture>/strings.json files every package ships.
var Cultures = []string{"en-US", "de-DE"}

var stringsByCulture = map[string]map[string]string{
	"en-US": {
		"RSAKeyFileNotFound":                  "RSA key file {0} was not found",
		"SessionCreateFailed":                 "Failed to create session. {0}",
		"AgentExit":                           "Agent will exit shortly for update, should back online within 10 seconds.",
		"AgentIsNotConfigured":                "Agent is not configured.",
		"AgentWithSameNameAlreadyExistInPool": "Pool {0} already contains an agent with name {1}.",
		"AlreadyConfiguredError":              "Cannot configure the agent because it is already configured. To reconfigure the agent, run 'config.cmd remove' or './config.sh remove' first.",
		"ConnectToServer":                     "Connecting to the server.",
		"ErrorOccurred":                       "An error occurred: {0}",
		"JobCompleted":                        "{0:u}: Job {1} completed with result: {2}",
		"ListenForJobs":                       "{0:u}: Listening for Jobs",
		"MissingAgent":                        "The agent no longer exists on the server. Please reconfigure the agent.",
		"PoolNotFound":                        "Agent pool not found: '{0}'",
		"QueueConError":                       "{0:u}: Agent connect error: {1}. Retrying until reconnected.",
		"QueueConnected":                      "{0:u}: Agent reconnected.",
		"RunningJob":                          "{0:u}: Running job: {1}",
		"SavedSettings":                       "{0:u}: Settings Saved.",
		"ScanToolCapabilities":                "Scanning for tool capabilities.",
		"SessionExist":                        "A session for this agent already exists.",
		"SessionExistStopRetry":               "Stop retry on SessionConflictException after retried for {0} seconds.",
		"UnrecognizedCmdArgs":                 "Unrecognized command-line input arguments: '{0}'. For usage refer to: .\\config.cmd --help or ./config.sh --help",
		"UpdateInProgress":                    "Agent update in progress, do not shutdown agent.",
		"UserShutdownAgent":                   "The agent has received a shutdown signal. This can happen when the agent service is stopped, or a manually started agent is canceled.",
	},
	"de-DE": {
		"RSAKeyFileNotFound":                  "Die RSA-Schlüsseldatei „{0}“ wurde nicht gefunden.",
		"SessionCreateFailed":                 "Fehler beim Erstellen der Sitzung. {0}",
		"AgentExit":                           "Der Agent wird kurzzeitig für die Aktualisierung beendet. Er sollte innerhalb von 10 Sekunden wieder online sein.",
		"AgentIsNotConfigured":                "Der Agent ist nicht konfiguriert.",
		"AgentWithSameNameAlreadyExistInPool": "Der Pool {0} enthält bereits einen Agenten mit der Bezeichnung {1}.",
		"AlreadyConfiguredError":              "Der Agent kann nicht konfiguriert werden, da er bereits konfiguriert ist. Um den Agent neu zu konfigurieren, führen Sie zuerst „config.cmd remove“ oder „./config.sh remove“ aus.",
		"ConnectToServer":                     "Verbindung zum Server wird hergestellt.",
		"ErrorOccurred":                       "Ein Fehler ist aufgetreten: {0}",
		"JobCompleted":                        "{0:u}: Der Auftrag „{1}“ wurde mit folgendem Ergebnis abgeschlossen: {2}",
		"ListenForJobs":                       "{0:u}: Auf Aufträge lauschen",
		"MissingAgent":                        "Der Agent ist auf dem Server nicht mehr vorhanden. Konfigurieren Sie den Agent neu.",
		"PoolNotFound":                        "Agentpool nicht gefunden: „{0}“",
		"QueueConError":                       "{0:u}: Agent-Verbindungsfehler: {1}. Das Herstellen der Verbindung wird solange versucht, bis die Verbindung erneut hergestellt ist.",
		"QueueConnected":                      "{0:u}: Agent erneut verbunden.",
		"RunningJob":                          "{0:u}: {1} wird ausgeführt",
		"SavedSettings":                       "{0:u}: Einstellungen wurden gespeichert.",
		"ScanToolCapabilities":                "Toolfunktionen werden gesucht.",
		"SessionExist":                        "Für diesen Agent ist bereits eine Sitzung vorhanden.",
		"SessionExistStopRetry":               "Beenden Sie den Wiederholungsversuch für SessionConflictException, nachdem es {0} Sekunden lang versucht wurde.",
		"UnrecognizedCmdArgs":                 "Unbekannte Eingabeargumente für die Befehlszeile: „{0}“. Informationen zur Verwendung finden Sie unter: „.\\config.cmd --help“ oder „./config.sh --help“",
		"UpdateInProgress":                    "Agent wird aktualisiert. Fahren Sie den Agent nicht herunter.",
		"UserShutdownAgent":                   "Der Agent hat ein Signal zum Herunterfahren empfangen. Dies kann vorkommen, wenn der Agentdienst beendet oder ein manuell gestarteter Agent abgebrochen wird.",
	},
}

// Strings returns a copy of the built-in strings of culture (nil when none ship).
func Strings(culture string) map[string]string {
	src := stringsByCulture[culture]
	if src == nil {
		return nil
	}
	out := make(map[string]string, len(src))
	for k, v := range src {
		out[k] = v
	}
	return out
}

// stringsFile is bin/<culture>/strings.json: indented JSON with sorted keys (encoding/json sorts
// map keys); like the real files, en-US starts with a UTF-8 byte order mark and de-DE does not.
func stringsFile(culture string) []byte {
	b, _ := json.MarshalIndent(stringsByCulture[culture], "", "  ")
	b = append(b, '\n')
	if culture == "en-US" {
		b = append([]byte("\xef\xbb\xbf"), b...)
	}
	return b
}
