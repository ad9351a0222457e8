package sim

// TB is the part of testing.TB that StartForTest uses (an interface, so that the simulator and
// the azp-sim binary do not import package testing).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// StartForTest starts a simulator on a loopback port for a test, fails the test when it cannot,
// and closes it when the test ends. It is the one way tests start an in-process simulator.
func StartForTest(t TB, o Options) *Server {
	t.Helper()
	s := New(o)
	if _, err := s.Start(); err != nil {
		t.Fatalf("start the simulator: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
