package pkgbuild

// The root scripts mirror the real ones (src/Misc/layoutroot in microsoft/azure-pipelines-agent)
// closely enough that a supervisor which wrongly relies on them shows the same failures: the root
// check, no signal traps in run.sh, and only exit code 4 handled there.

const configSh = `#!/bin/bash
# Fake agent package: mirrors the real config.sh without the ldd/libicu checks.

user_id=` + "`id -u`" + `
if [ $user_id -eq 0 -a -z "$AGENT_ALLOW_RUNASROOT" ]; then
    echo "Must not run with sudo"
    exit 1
fi

SOURCE="${BASH_SOURCE[0]}"
while [ -h "$SOURCE" ]; do
  DIR="$( cd -P "$( dirname "$SOURCE" )" && pwd )"
  SOURCE="$(readlink "$SOURCE")"
  [[ $SOURCE != /* ]] && SOURCE="$DIR/$SOURCE"
done
DIR="$( cd -P "$( dirname "$SOURCE" )" && pwd )"
cd "$DIR"

source ./env.sh

shopt -s nocasematch
if [[ "$1" == "remove" ]]; then
    ./bin/Agent.Listener "$@"
else
    ./bin/Agent.Listener configure "$@"
fi
`

const runSh = `#!/bin/bash
# Fake agent package: mirrors the real run.sh (no exec, no signal traps, only exit code 4 handled).

user_id=` + "`id -u`" + `
if [ $user_id -eq 0 -a -z "$AGENT_ALLOW_RUNASROOT" ]; then
    echo "Must not run interactively with sudo"
    exit 1
fi

SOURCE="${BASH_SOURCE[0]}"
while [ -h "$SOURCE" ]; do
  DIR="$( cd -P "$( dirname "$SOURCE" )" && pwd )"
  SOURCE="$(readlink "$SOURCE")"
  [[ $SOURCE != /* ]] && SOURCE="$DIR/$SOURCE"
done
DIR="$( cd -P "$( dirname "$SOURCE" )" && pwd )"

shopt -s nocasematch
if [[ "$1" == "localRun" ]]; then
    "$DIR"/bin/Agent.Listener "$@"
else
    "$DIR"/bin/Agent.Listener run "$@"

    # Return code 4 means the run once agent received an update message.
    # Wait for the update process to finish and run the agent again, once.
    returnCode=$?
    if [[ $returnCode == 4 ]]; then
        sleep 5
        for i in $(seq 1 15); do
            if [ -x "$DIR/bin/Agent.Listener" ]; then
                break
            fi
            sleep 1
        done
        if [ ! -x "$DIR/bin/Agent.Listener" ]; then
            echo "Failed to update within 20 seconds."
            exit 1
        fi
        "$DIR"/bin/Agent.Listener run "$@"
    else
        exit $returnCode
    fi
fi
`

const envSh = `#!/bin/bash
# Fake agent package: mirrors the real env.sh (writes .path and appends known variables to .env).

varCheckList=(
    'LANG'
    'JAVA_HOME'
    'ANT_HOME'
    'M2_HOME'
    'ANDROID_HOME'
    'GRADLE_HOME'
    'NVM_BIN'
    'NVM_PATH'
    'LD_LIBRARY_PATH'
    'AGENT_TOOLSDIRECTORY'
    'VSTS_HTTP_PROXY'
    'VSTS_HTTP_PROXY_USERNAME'
    'VSTS_HTTP_PROXY_PASSWORD'
    )

envContents=""

if [ -f ".env" ]; then
    envContents=` + "`cat .env`" + `
else
    touch .env
fi

function writeVar()
{
    checkVar="$1"
    checkDelim="${1}="
    if test "${envContents#*$checkDelim}" = "$envContents"
    then
        if [ ! -z "${!checkVar}" ]; then
            echo "${checkVar}=${!checkVar}">>.env
        fi
    fi
}

echo $PATH>.path

for var_name in ${varCheckList[@]}
do
    writeVar "${var_name}"
done
`

const licenseHTML = `<!DOCTYPE html>
<html><head><title>Fake agent package</title></head>
<body><p>Test double built by azp-entrypoint's internal/sim/pkgbuild. Not the Azure Pipelines agent.</p></body>
</html>
`
