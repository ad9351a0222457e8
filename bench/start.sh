#!/bin/bash
# The baseline for `make bench`: Microsoft's Linux start.sh from "Run a self-hosted agent in Docker"
# (learn.microsoft.com, azure/devops/pipelines/agents/docker), step for step, so that the benchmark
# compares azp-entrypoint with what most images run today. Changes from the published script, none
# of which makes it slower:
# - the agent directory is the current directory (the Docs image uses WORKDIR /azp), so the token
#   file is ./.token instead of /azp/.token;
# - command substitutions are quoted and `[ a -o b ]` is spelled `[ a ] || [ b ]` (shellcheck);
# - jq is used when installed, else sed (the Docs image installs jq; a fresh machine may not have it);
# - BENCH_BAKED=true skips steps 1 and 2 when ./config.sh is already there: the "baked image"
#   variant many derived images use (Microsoft's script always downloads).
set -e

if [ -z "${AZP_URL}" ]; then
  echo 1>&2 "error: missing AZP_URL environment variable"
  exit 1
fi

if [ -z "${AZP_TOKEN_FILE}" ]; then
  if [ -z "${AZP_TOKEN}" ]; then
    echo 1>&2 "error: missing AZP_TOKEN environment variable"
    exit 1
  fi

  AZP_TOKEN_FILE="${PWD}/.token"
  echo -n "${AZP_TOKEN}" > "${AZP_TOKEN_FILE}"
fi

unset AZP_TOKEN

if [ -n "${AZP_WORK}" ]; then
  mkdir -p "${AZP_WORK}"
fi

cleanup() {
  trap "" EXIT

  if [ -e ./config.sh ]; then
    print_header "Cleanup. Removing Azure Pipelines agent..."

    # If the agent has some running jobs, the configuration removal process will fail.
    # So, give it some time to finish the job.
    while true; do
      ./config.sh remove --unattended --auth "PAT" --token "$(cat "${AZP_TOKEN_FILE}")" && break

      echo "Retrying in 30 seconds..."
      sleep 30
    done
  fi
}

print_header() {
  lightcyan="\033[1;36m"
  nocolor="\033[0m"
  echo -e "\n${lightcyan}$1${nocolor}\n"
}

# Let the agent ignore the token env variables
export VSO_AGENT_IGNORE="AZP_TOKEN,AZP_TOKEN_FILE"
# The Docs Dockerfile sets this with ENV; the agent refuses to run as root without it.
export AGENT_ALLOW_RUNASROOT="1"

if [ "${BENCH_BAKED}" = "true" ] && [ -e ./config.sh ]; then
  print_header "1-2. Agent baked into the image: no download"
else
  print_header "1. Determining matching Azure Pipelines agent..."

  AZP_AGENT_PACKAGES=$(curl -LsS \
      -u "user:$(cat "${AZP_TOKEN_FILE}")" \
      -H "Accept:application/json;" \
      "${AZP_URL}/_apis/distributedtask/packages/agent?platform=${TARGETARCH}&top=1")

  if command -v jq >/dev/null; then
    AZP_AGENT_PACKAGE_LATEST_URL=$(echo "${AZP_AGENT_PACKAGES}" | jq -r ".value[0].downloadUrl")
  else
    AZP_AGENT_PACKAGE_LATEST_URL=$(echo "${AZP_AGENT_PACKAGES}" |
      sed -n 's/.*"downloadUrl"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1)
  fi

  if [ -z "${AZP_AGENT_PACKAGE_LATEST_URL}" ] || [ "${AZP_AGENT_PACKAGE_LATEST_URL}" == "null" ]; then
    echo 1>&2 "error: could not determine a matching Azure Pipelines agent"
    echo 1>&2 "check that account '${AZP_URL}' is correct and the token is valid for that account"
    exit 1
  fi

  print_header "2. Downloading and extracting Azure Pipelines agent..."

  curl -LsS "${AZP_AGENT_PACKAGE_LATEST_URL}" | tar -xz & wait $!
fi

# shellcheck source=/dev/null
source ./env.sh

trap "cleanup; exit 0" EXIT
trap "cleanup; exit 130" INT
trap "cleanup; exit 143" TERM

print_header "3. Configuring Azure Pipelines agent..."

./config.sh --unattended \
  --agent "${AZP_AGENT_NAME:-$(hostname)}" \
  --url "${AZP_URL}" \
  --auth "PAT" \
  --token "$(cat "${AZP_TOKEN_FILE}")" \
  --pool "${AZP_POOL:-Default}" \
  --work "${AZP_WORK:-_work}" \
  --replace \
  --acceptTeeEula & wait $!

print_header "4. Running Azure Pipelines agent..."

chmod +x ./run.sh

# To be aware of TERM and INT signals call ./run.sh
# Running it with the --once flag at the end will shut down the agent after the build is executed
./run.sh "$@" & wait $!
