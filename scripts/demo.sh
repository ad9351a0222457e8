#!/usr/bin/env bash
# `make demo`: the whole lifecycle against the local simulator, with no Azure DevOps organisation:
# the entrypoint downloads and verifies the (fake) agent package, registers the agent, runs a job,
# gets SIGTERM in the middle of it, lets it finish, and deregisters the agent.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/bin"
work="$(mktemp -d /tmp/azp-demo.XXXXXX)"
chmod 755 "$work"
sim_pid=""
ep_pid=""
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
  if [ -n "$ep_pid" ]; then kill -KILL "$ep_pid" 2>/dev/null || true; fi
  if [ -n "$sim_pid" ]; then
    kill -TERM "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
token="demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

step "Starting the Azure DevOps simulator (pool Default, fake agent package 4.260.0)"
AZP_SIM_TOKEN="$token" "$bin/azp-sim" serve --package-version 4.260.0 --package-dir "$work/packages" \
  >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
url=""
for _ in $(seq 1 300); do
  url="$(head -n 1 "$work/sim.out" 2>/dev/null || true)"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "the simulator did not start:"; cat "$work/sim.err"; exit 1; }
export AZP_SIM_URL="$url"
echo "organisation URL: $url"

step "Starting azp-entrypoint (downloads, verifies and installs the agent, registers it, runs the listener)"
AZP_URL="$url" AZP_TOKEN="$token" AZP_POOL=Default AZP_AGENT_NAME=demo-agent \
  AZP_AGENT_DIR="$work/agent" AZP_STATE_DIR="$work/state" AZP_WORK_MIN_FREE=1MiB \
  AZP_STOP_TIMEOUT=30s AZP_LOG_FORMAT=text \
  "$bin/azp-entrypoint" &
ep_pid=$!

for _ in $(seq 1 300); do
  "$bin/azp-sim" agents list --pool Default 2>/dev/null | grep -q 'demo-agent.*online' && break
  sleep 0.1
done
step "The pool, as the server sees it"
"$bin/azp-sim" agents list --pool Default
"$bin/azp-entrypoint" health --state-dir "$work/state" || true

step "Queueing a 5-second job"
"$bin/azp-sim" jobs queue --pool Default --name "Build and test" --duration 5s
for _ in $(seq 1 100); do
  "$bin/azp-sim" agents list --pool Default 2>/dev/null | grep -q 'demo-agent.*online.*[0-9]' && break
  sleep 0.1
done
sleep 1.5

step "SIGTERM while the job runs: the agent is disabled, the job finishes, then the agent is deregistered"
kill -TERM "$ep_pid"
code=0
wait "$ep_pid" || code=$?
ep_pid=""
echo "azp-entrypoint exited with code $code"

step "The job, as the server saw it"
"$bin/azp-sim" jobs list
step "The pool after the stop (no ghost agent)"
"$bin/azp-sim" agents list --pool Default
if "$bin/azp-sim" agents list --pool Default | grep -q demo-agent; then
  echo "demo-agent is still registered"; exit 1
fi
echo "demo-agent is gone from the pool."
exit "$code"
