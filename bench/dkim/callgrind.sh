#!/bin/sh
# callgrind.sh BUILD_DIR CORPUS_DIR [N] - per-message instruction counts of
# the dkim plugin, measured with callgrind on `authscan check`.
#
# Each configuration runs `authscan check` once over 1 copy and once over
# N+1 copies of the message (one process, one worker state, so the key
# cache behaves as in the daemon).  The per-message cost is
#     (Ir(N+1 msgs) - Ir(1 msg)) / N
# and the plugin's share is that minus the same quantity with the dkim
# plugin disabled, which removes process start-up,
# configuration, the rest of the pipeline and the first message's one-off
# costs (OpenSSL provider loading, the first key decode).  Plugins that
# depend on dkim (dmarc) are disabled in every run so that they are not
# counted as DKIM cost.
# Build with -DCMAKE_BUILD_TYPE=RelWithDebInfo; CORPUS_DIR comes from
# make_corpus.py.
set -eu
BUILD=${1:?build dir}
CORPUS=${2:?corpus dir}
N=${3:-20}
BIN="$BUILD/bin/authscan"
ZONE="$CORPUS/bench.zone"
DEPENDENTS=${DEPENDENTS:-dmarc}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ir() {  # ir LABEL COUNT MSG SETTINGS... -> total instructions
    label=$1; count=$2; msg=$3; shift 3
    files=""
    i=0
    while [ $i -lt "$count" ]; do files="$files $msg"; i=$((i + 1)); done
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.$label.$count" \
        --log-file="$TMP/log.$label.$count" \
        "$BIN" check --dns-zone "$ZONE" "$@" $files >/dev/null 2>"$TMP/err" ||
        { echo "authscan failed: $(cat "$TMP/err")" >&2; exit 1; }
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$TMP/log.$label.$count"
}

permsg() {  # permsg LABEL MSG SETTINGS... -> instructions per extra message
    label=$1; msg=$2; shift 2
    a=$(ir "$label" 1 "$msg" "$@")
    b=$(ir "$label" $((N + 1)) "$msg" "$@")
    echo $(( (b - a) / N ))
}

printf '%-34s %14s %14s\n' "configuration" "Ir/msg total" "Ir/msg dkim"
for msg in rsa ed25519 dual; do
    base=$(permsg "base-$msg" "$CORPUS/$msg.eml" -s "plugins.disable=dkim,$DEPENDENTS")
    printf '%-34s %14s %14s\n' "$msg: pipeline without dkim" "$base" "-"
    for cfg in "library:-s dkim.verify=library" \
               "cached, cache off:-s dkim.key_cache_size=0" \
               "cached (default):"; do
        name=${cfg%%:*}
        opts=${cfg#*:}
        # shellcheck disable=SC2086
        t=$(permsg "$msg-$name" "$CORPUS/$msg.eml" -s "plugins.disable=$DEPENDENTS" $opts)
        printf '%-34s %14s %14s\n' "$msg: $name" "$t" "$((t - base))"
    done
done
