package supervisor

import (
	"testing"
)

// german is the test package's strings for a listener started with LANG=de_DE.UTF-8.
var german = loadMessages("testdata/agent", []string{"PATH=/usr/bin", "LANG=de_DE.UTF-8"})

// The real listener prints its lines in the culture of its environment, from the package's own
// bin/<culture>/strings.json (StringUtil.Loc). With LANG=de_DE.UTF-8 "Listening for Jobs" never
// appears; the German lines must be recognised, and the English ones still (a key missing from
// the culture's file is printed in English).
func TestMessagesLocalized(t *testing.T) {
	for _, tc := range []struct {
		msgs *messages
		line string
		want event
	}{
		{german, "2026-11-22 10:00:50Z: Auf Aufträge lauschen", event{kind: evListening}},
		{german, "2026-11-22 10:00:51Z: Build und Test wird ausgeführt", event{kind: evJobStarted, job: "Build und Test"}},
		{german, "2026-11-22 10:00:55Z: Der Auftrag „Build“ wurde mit folgendem Ergebnis abgeschlossen: Succeeded", event{kind: evJobFinished}},
		{german, "2026-11-22 10:01:00Z: Agent-Verbindungsfehler: Connection refused (127.0.0.1:9). Das Herstellen der Verbindung wird solange versucht, bis die Verbindung erneut hergestellt ist.", event{kind: evConnectError}},
		{german, "2026-11-22 10:02:00Z: Agent erneut verbunden.", event{kind: evReconnected}},
		{german, "Der Agent wird kurzzeitig für die Aktualisierung beendet. Er sollte innerhalb von 10\u00a0Sekunden wieder online sein.", event{kind: evUpdating}},
		{german, "Der Agent wird kurzzeitig für die Aktualisierung beendet. Er sollte innerhalb von 10 Sekunden wieder online sein.", event{kind: evUpdating}},
		{german, "2026-11-22 10:00:50Z: Listening for Jobs", event{kind: evListening}},
		{english, "2026-11-22 10:00:50Z: Listening for Jobs", event{kind: evListening}},
		{english, "2026-11-22 10:00:50Z: Running job: Build and test", event{kind: evJobStarted, job: "Build and test"}},
		{english, "2026-11-22 10:00:55Z: Job Build completed with result: Succeeded", event{kind: evJobFinished}},
		{english, "2026-11-22 10:01:00Z: Agent connect error: refused. Retrying until reconnected.", event{kind: evConnectError}},
		{english, "2026-11-22 10:02:00Z: Agent reconnected.", event{kind: evReconnected}},
		{english, "Agent will exit shortly for update, should back online within 10 seconds.", event{kind: evUpdating}},
		{english, "Scanning for tool capabilities.", event{}},
		// German text with an English-only table is not recognised; nor is a line that only
		// contains the words (a job's echo inside a longer line).
		{english, "2026-11-22 10:00:50Z: Auf Aufträge lauschen", event{}},
		{english, "echo 'Listening for Jobs'", event{}},
		{english, "Listening for Jobs", event{}},
	} {
		if got := tc.msgs.classify(tc.line); got != tc.want {
			t.Errorf("%s: classify(%q) = %+v, want %+v", tc.msgs.culture, tc.line, got, tc.want)
		}
	}
	for _, tc := range []struct {
		msgs  *messages
		lines []string
		want  outcome
	}{
		{german, []string{"Der Agent ist auf dem Server nicht mehr vorhanden. Konfigurieren Sie den Agent neu."}, outMissingAgent},
		{german, []string{"Für diesen Agent ist bereits eine Sitzung vorhanden."}, outSessionConflict},
		{german, []string{"Beenden Sie den Wiederholungsversuch für SessionConflictException, nachdem es 240 Sekunden lang versucht wurde."}, outSessionConflict},
		{english, []string{"The agent no longer exists on the server. Please reconfigure the agent."}, outMissingAgent},
		{english, []string{"A session for this agent already exists.", "Stop retry on SessionConflictException after retried for 240 seconds."}, outSessionConflict},
		{english, []string{"An error occurred: something else"}, outFatal},
	} {
		if got := tc.msgs.classifyFailure(tc.lines); got != tc.want {
			t.Errorf("%s: classifyFailure(%q) = %v, want %v", tc.msgs.culture, tc.lines, got, tc.want)
		}
	}
}

// The culture follows .NET's rules on Linux: LC_ALL, then LC_MESSAGES, then LANG.
func TestCulture(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, ""},
		{[]string{"LANG=C.UTF-8"}, ""},
		{[]string{"LANG=POSIX"}, ""},
		{[]string{"LANG=de_DE.UTF-8"}, "de-DE"},
		{[]string{"LANG=de_DE.UTF-8", "LC_MESSAGES=fr_FR"}, "fr-FR"},
		{[]string{"LANG=de_DE.UTF-8", "LC_MESSAGES=fr_FR", "LC_ALL=ja_JP.UTF-8"}, "ja-JP"},
		{[]string{"LANG=zh_TW.UTF-8@stroke"}, "zh-TW"},
		{[]string{"LANG=de_DE.UTF-8", "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1"}, ""},
		{[]string{"LANG=../../etc"}, ""},
		{[]string{"LANG=x/../de_DE"}, "x/"},
	} {
		if got := culture(tc.env); got != tc.want {
			t.Errorf("culture(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
	// A culture name never leads the read outside bin/.
	if m := loadMessages("testdata/agent", []string{"LANG=x/../de_DE"}); len(m.patterns["ListenForJobs"]) != 1 {
		t.Errorf("a culture with a path separator was read: %d patterns", len(m.patterns["ListenForJobs"]))
	}
}
