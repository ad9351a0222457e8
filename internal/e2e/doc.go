// Package e2e holds the end-to-end tests of azp-entrypoint: the real binary, built once, runs as
// PID 1 of a PID namespace each test creates (unshare --pid --fork --mount-proc, as root) against
// the simulator and a fake agent package, one test per lifecycle path. It has no code of its own
// beyond the harness and is never imported by the product.
package e2e
