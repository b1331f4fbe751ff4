#!/bin/sh
# Registers the `default` namespace and Drydock's custom search attributes
# (workflows.SearchAttributes; a test checks this list) on a Temporal server
# that does not create them itself. Run by docker-compose.temporal.yml
# (admin-tools image) and by scripts/cluster.sh. Safe to run again.
#
#   TEMPORAL_ADDRESS  the frontend, host:port
#   TEMPORAL_CLI      the temporal CLI (default: on PATH)
#   TEMPORAL_NAMESPACE  default: default
set -eu
: "${TEMPORAL_ADDRESS:?}"
cli="${TEMPORAL_CLI:-temporal}"
ns="${TEMPORAL_NAMESPACE:-default}"

"$cli" operator namespace describe -n "$ns" >/dev/null 2>&1 ||
  "$cli" operator namespace create -n "$ns" --retention 7d
for sa in DrydockRepo=Keyword DrydockPRNumber=Int DrydockMachineID=Keyword \
          DrydockPhase=Keyword DrydockPool=Keyword DrydockJobID=Int; do
  "$cli" operator search-attribute list -n "$ns" | grep -q "^ *${sa%%=*} " ||
    "$cli" operator search-attribute create -n "$ns" --name "${sa%%=*}" --type "${sa#*=}"
done
