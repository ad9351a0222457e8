//go:build linux

package containertest

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"
)

// Network is a user-defined network with a simulator on it, for `docker run` tests.
type Network struct {
	Name string
	Sim  Sim
	URL  string // the organisation URL as agents on the network reach it
}

// NewNetwork creates a network and starts the simulator image on it; both are removed when the
// test ends.
func NewNetwork(t testing.TB, im Images) *Network {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	n := &Network{Name: "azpct-" + hex.EncodeToString(b)}
	Must(t, "network", "create", n.Name)
	t.Cleanup(func() { Try("network", "rm", n.Name) })
	sim := n.Name + "-sim"
	Must(t, "run", "-d", "--name", sim, "--network", n.Name, "--network-alias", "azp-sim",
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
		im.Sim, "serve", "--addr", "0.0.0.0:8080", "--org", "sim", "--token", SimToken)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := Try("logs", "--tail", "40", sim)
			t.Logf("simulator logs:\n%s", out)
		}
		Try("rm", "-f", "-v", sim)
	})
	n.Sim = Sim{Container: sim, Org: "sim"}
	n.URL = "http://azp-sim:8080/sim"
	Eventually(t, time.Minute, "simulator answers", func() error {
		_, err := n.Sim.Agents(pool)
		return err
	})
	return n
}

const pool = "Default"

// Cleanup removes a container (and its anonymous volumes) at the end of the test, showing its
// logs when the test failed.
func Cleanup(t testing.TB, name string) {
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := Try("logs", "--tail", "60", name)
			t.Logf("%s logs:\n%s", name, out)
		}
		Try("rm", "-f", "-v", name)
	})
}
