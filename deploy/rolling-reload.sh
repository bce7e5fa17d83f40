#!/usr/bin/env bash
# Roll the registry's current model across a fleet of inferd hosts, one host at a time.
#
#   deploy/rolling-reload.sh [--expect-version V] [--wait SECONDS] URL [URL ...]
#
# For each host, in the order given: `inferd reload --url URL` (POST /admin/reload:
# the host fetches, validates and switches; a bad model leaves its old one serving),
# then the gate `inferd smoke --url URL --expect-version V` (ready, a prediction
# answers, the right version). The first failure stops the roll: the hosts after it
# are not touched, the hosts before it already serve the new version, and the failed
# host still serves its old model (reload never swaps in a model that failed to load).
#
# Every host must end up on the same version: without --expect-version, the version
# the first host serves after its reload is expected of every later host, so a
# registry label moved mid-roll stops the roll instead of mixing three versions.
#
# The admin token comes from ADMIN_API_TOKEN_FILE (or ADMIN_API_TOKEN) in the
# environment, as for `inferd reload`. INFERD_CMD overrides the command (default
# `inferd`), e.g. INFERD_CMD="/opt/inferd/venv/bin/inferd".
#
# Exit codes: 0 every host reloaded and passed; 1 a reload failed; 4/5/6 the smoke
# gate failed (not ready / prediction / version, as `inferd smoke`); 2 usage.
set -euo pipefail

usage() { sed -n '4p' "$0" | sed 's/^#  *//' >&2; exit 2; }

inferd_cmd=(${INFERD_CMD:-inferd})
expect=""
wait_seconds=60
while [[ $# -gt 0 ]]; do
    case "$1" in
        --expect-version) expect="${2:?}"; shift 2 ;;
        --wait) wait_seconds="${2:?}"; shift 2 ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) echo "rolling-reload: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || usage

total=$#
done_hosts=0
for url in "$@"; do
    echo "rolling-reload: [$((done_hosts + 1))/$total] $url: reload" >&2
    if ! "${inferd_cmd[@]}" reload --url "$url"; then
        echo "rolling-reload: STOPPED at $url: reload failed (it still serves its old model);" \
             "$((total - done_hosts - 1)) host(s) after it not touched" >&2
        exit 1
    fi
    gate=("${inferd_cmd[@]}" smoke --url "$url" --wait "$wait_seconds")
    [[ -n "$expect" ]] && gate+=(--expect-version "$expect")
    status=0
    report=$("${gate[@]}") || status=$?
    echo "$report"
    if [[ $status -ne 0 ]]; then
        echo "rolling-reload: STOPPED at $url: smoke gate failed (exit $status);" \
             "$((total - done_hosts - 1)) host(s) after it not touched" >&2
        exit "$status"
    fi
    if [[ -z "$expect" ]]; then
        expect=$(printf '%s' "$report" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
        echo "rolling-reload: every later host must serve version $expect" >&2
    fi
    done_hosts=$((done_hosts + 1))
done
echo "rolling-reload: all $total host(s) serve version $expect" >&2
