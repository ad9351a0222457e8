#!/usr/bin/env bash
# `make demo-scale`: autoscaling on a local ECS. The simulator serves Azure DevOps and an ECS control
# plane whose tasks run the real azp-entrypoint as PID 1 of their own PID namespaces (needs root).
# `azp-entrypoint scale` sees a burst of jobs with different demands, launches a task for each job
# it can serve, the tasks run their job and leave; at the end: zero agents, zero tasks, zero
# ghosts, the placeholder still there, and the job it cannot serve still queued.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/bin"
if [ "$(id -u)" -ne 0 ]; then
  echo "demo-scale runs agent tasks in PID namespaces (unshare --pid): run it as root" >&2
  exit 1
fi
work="$(mktemp -d /tmp/azp-demo-scale.XXXXXX)"
chmod 755 "$work"
sim_pid=""
scale_pid=""
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
  if [ -n "$scale_pid" ]; then kill -KILL "$scale_pid" 2>/dev/null || true; fi
  if [ -n "$sim_pid" ]; then
    kill -TERM "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
token="demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

step "Starting the simulator: Azure DevOps (pool Default) and a local ECS (cluster azp-agents, task definition azp-agent)"
AZP_SIM_TOKEN="$token" "$bin/azp-sim" serve --package-version 4.260.0 --package-dir "$work/packages" \
  --ecs-addr 127.0.0.1:0 --ecs-entrypoint "$bin/azp-entrypoint" --ecs-dir "$work/ecs" --ecs-stop-timeout 10 \
  --ecs-pending 1s --ecs-env AZP_LOG_FORMAT=json --ecs-env FAKE_AGENT_POLL_BACKOFF=1s \
  >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
url=""
ecs=""
for _ in $(seq 1 300); do
  url="$(head -n 1 "$work/sim.out" 2>/dev/null || true)"
  ecs="$(sed -n 's/^azp-sim: ECS endpoint \([^ ]*\).*/\1/p' "$work/sim.err" 2>/dev/null || true)"
  [ -n "$url" ] && [ -n "$ecs" ] && break
  sleep 0.1
done
if [ -z "$url" ] || [ -z "$ecs" ]; then echo "the simulator did not start:"; cat "$work/sim.err"; exit 1; fi
export AZP_SIM_URL="$url"
echo "organisation URL: $url"
echo "ECS endpoint:     $ecs"

tasks() { curl -fsS "$ecs/_ecssim/tasks"; }
show() {
  printf '  tasks: %s\n' "$(tasks | jq -r '[.[] | select(.StartedBy == "azp-scale") | .LastStatus] | group_by(.) | map("\(.[0])=\(length)") | join(" ")')"
  printf '  agents: %s\n' "$("$bin/azp-sim" agents list --pool Default --json | jq -r 'map("\(.name|sub("scale-demo-";""))[\(.status)\(if .assignedRequestId then ",busy" else "" end)]") | join(" ")')"
  printf '  jobs: %s\n' "$("$bin/azp-sim" jobs list --json | jq -r 'map(if .result != null and .result != "" then .result elif (.assignTime|startswith("0001")) then "queued" else "running" end) | group_by(.) | map("\(.[0])=\(length)") | join(" ")')"
}

step "Starting azp-entrypoint scale (capabilities docker, java=17; at most 4 tasks; once mode)"
AZP_URL="$url" AZP_TOKEN="$token" AZP_POOL=Default AZP_AGENT_NAME_PREFIX=scale-demo- \
  AZP_SCALE_CLUSTER=azp-agents AZP_SCALE_TASK_DEFINITION=azp-agent AZP_SCALE_SUBNETS=subnet-0demo \
  AZP_SCALE_CAPABILITIES="docker,java=17" AZP_SCALE_MAX=4 AZP_SCALE_INTERVAL=1s AZP_SCALE_IDLE_TIMEOUT=30s \
  AZP_STATE_DIR="$work/scaler" AZP_LOG_FORMAT=text HOME="$work" \
  AWS_ENDPOINT_URL_ECS="$ecs" AWS_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true \
  AWS_ACCESS_KEY_ID=AKIAECSSIMEXAMPLE001 AWS_SECRET_ACCESS_KEY=ecssim/example/secret/access/key/00000000 \
  "$bin/azp-entrypoint" scale >"$work/scaler.log" 2>&1 &
scale_pid=$!
for _ in $(seq 1 100); do
  "$bin/azp-sim" agents list --pool Default 2>/dev/null | grep -q 'scale-demo-placeholder' && break
  sleep 0.1
done
show

step "Queueing a burst: 3 jobs demanding docker, 2 demanding java -equals 17, 1 demanding Agent.Version -gtVersion 4.200.0, 1 demanding maven (no profile serves it)"
queue() { curl -fsS -X POST "${url%/*}/_sim/jobs" -H 'Content-Type: application/json' -d "$1" >/dev/null; }
for i in 1 2 3; do queue "{\"name\":\"docker-$i\",\"duration\":\"3s\",\"demands\":[\"docker\"]}"; done
for i in 1 2; do queue "{\"name\":\"java-$i\",\"duration\":\"3s\",\"demands\":[\"java -equals 17\"]}"; done
queue '{"name":"new-agent","duration":"3s","demands":["Agent.Version -gtVersion 4.200.0"]}'
queue '{"name":"maven","duration":"3s","demands":["maven"]}'

step "Watching tasks appear, run their jobs and leave"
served=6
for _ in $(seq 1 120); do
  if ! kill -0 "$scale_pid" 2>/dev/null; then echo "the scaler exited:"; tail -20 "$work/scaler.log"; exit 1; fi
  show
  done_jobs="$("$bin/azp-sim" jobs list --json | jq '[.[] | select(.result == "succeeded")] | length')"
  active="$(tasks | jq '[.[] | select(.StartedBy == "azp-scale" and .LastStatus != "STOPPED")] | length')"
  agents="$("$bin/azp-sim" agents list --pool Default --json | jq 'length')"
  if [ "$done_jobs" -eq "$served" ] && [ "$active" -eq 0 ] && [ "$agents" -eq 1 ]; then break; fi
  sleep 2
done

step "The scaler's decisions"
grep -E 'launched agent tasks|placeholder|ghost|paused' "$work/scaler.log" | sed 's/^/  /' || true

step "Result"
show
launched="$(tasks | jq '[.[] | select(.StartedBy == "azp-scale")] | length')"
echo "  tasks launched: $launched for $served jobs it can serve"
"$bin/azp-sim" agents list --pool Default
fail=0
[ "$done_jobs" -eq "$served" ] || { echo "FAIL: $done_jobs of $served jobs succeeded"; fail=1; }
[ "$active" -eq 0 ] || { echo "FAIL: $active tasks still running"; fail=1; }
[ "$agents" -eq 1 ] || { echo "FAIL: agents left besides the placeholder"; fail=1; }
"$bin/azp-sim" jobs list --json | jq -e '[.[] | select(.name == "maven" and (.assignTime|startswith("0001")))] | length == 1' >/dev/null ||
  { echo "FAIL: the maven job was served"; fail=1; }

step "Stopping the scaler (SIGTERM: exits 0, leaves tasks alone)"
kill -TERM "$scale_pid"
code=0
wait "$scale_pid" || code=$?
scale_pid=""
echo "  scaler exit code: $code"
[ "$code" -eq 0 ] || fail=1
[ "$fail" -eq 0 ] && printf '\n\033[1;32mdemo-scale: zero agents, zero tasks, zero ghosts; the placeholder is still there\033[0m\n'
exit "$fail"
