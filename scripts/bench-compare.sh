#!/usr/bin/env bash
# Before/after benchmark of two checkouts of stowage, in one run,
# interleaved: builds the `file_engine`, `peers` and `append_latency`
# benches of stowage-backends in each checkout (release, one cargo
# profile), then runs the two builds alternately for ROUNDS rounds (the
# order flips every round, so load that drifts during the run hits both
# alike), in the same temp dir root, and prints the median of every
# metric per build and new/old.
#
#   scripts/bench-compare.sh OLD_CHECKOUT NEW_CHECKOUT
#
# Environment: ROUNDS (default 7), PROFILE (cargo profile, inheriting
# `bench`; default `perf`), FEATURES (default `file,sled`; never add
# rocksdb unless both builds are cached), OUT (raw results dir, default a
# fresh temp dir), STOWAGE_BENCH_DIR (temp dir root of the stores),
# PEERS_CASES (the `peers` cases to run), CARGO_TARGET_DIR as usual.
#
# Raw lines go to $OUT/raw.tsv (round, build, metric, value, unit); the
# summary to $OUT/summary.md (SUMMARIZE_ONLY=raw.tsv prints the summary of
# an earlier run). `peer/*` metrics are the peers' own rates
# (std::fs, object_store, SQLite: the same code in both builds), so their
# new/old ratio shows how much the machine alone moved the numbers.
set -euo pipefail

if [ -z "${SUMMARIZE_ONLY:-}" ]; then
old=${1:?usage: bench-compare.sh OLD_CHECKOUT NEW_CHECKOUT}
new=${2:?usage: bench-compare.sh OLD_CHECKOUT NEW_CHECKOUT}
fi
rounds=${ROUNDS:-7}
profile=${PROFILE:-perf}
features=${FEATURES:-file,sled}
out=${OUT:-$(mktemp -d -t bench-compare.XXXXXX)}
cases=${PEERS_CASES:-blob_put_4k_1,blob_put_1m_16,blob_get_4k_1,blob_get_4k_16,blob_get_1m_1,blob_get_1m_16,append_1,append_64,read_events}
mkdir -p "$out"
export STOWAGE_BENCH_DIR=${STOWAGE_BENCH_DIR:-$(mktemp -d -t stowage-bench.XXXXXX)}

# Medians per (build, metric); new/old of the medians; and the median of
# the per-round paired ratios (new ÷ old of the same round, the two runs
# back to back), which cancels load that drifts between rounds. For per_s
# and x higher is better, for us lower is better.
summarize() {
    sort -t$'\t' -k3,3 -k2,2 -k4,4g "$1" | awk -F'\t' '
        { key = $3 SUBSEP $2; n[key]++; v[key, n[key]] = $4; unit[$3] = $5
          at[$3, $2, $1] = $4; rs[$1] = 1
          if (!($3 in seen)) { seen[$3] = 1; names[++k] = $3 } }
        function med(k,   c) { c = n[k]; if (c == 0) return 0;
            return (c % 2) ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2 }
        function sortnum(a, c,   i, j, t) { for (i = 2; i <= c; i++) { t = a[i];
            for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
        END {
            print "| metric | unit | old (median) | new (median) | new/old of medians | median paired new/old | better | rounds |"
            print "|---|---|---|---|---|---|---|---|"
            for (i = 1; i <= k; i++) {
                m = names[i]; o = med(m SUBSEP "old"); w = med(m SUBSEP "new")
                ratio = (o > 0) ? w / o : 0
                c = 0; delete p
                for (r in rs) if (((m, "old", r) in at) && ((m, "new", r) in at) && at[m, "old", r] > 0)
                    p[++c] = at[m, "new", r] / at[m, "old", r]
                sortnum(p, c)
                pr = (c == 0) ? 0 : ((c % 2) ? p[(c + 1) / 2] : (p[c / 2] + p[c / 2 + 1]) / 2)
                better = (unit[m] == "us") ? (pr < 1 ? "new" : "old") : (pr > 1 ? "new" : "old")
                printf "| %s | %s | %.4g | %.4g | %.3f | %.3f | %s | %d/%d |\n", m, unit[m], o, w,
                    ratio, pr, better, n[m SUBSEP "old"], n[m SUBSEP "new"]
            }
        }'
}
if [ "${SUMMARIZE_ONLY:-}" ]; then summarize "$SUMMARIZE_ONLY"; exit; fi

# Builds the benches of checkout $1; prints "name path" per bench binary.
build() {
    (cd "$1" && cargo bench --no-run -j 2 --message-format=json \
        --config "profile.$profile.inherits=\"bench\"" \
        --config "profile.$profile.debug=\"line-tables-only\"" \
        --profile "$profile" -p stowage-backends --features "$features" \
        --bench file_engine --bench peers --bench append_latency) |
        jq -r 'select(.reason == "compiler-artifact" and .executable != null
                      and (.target.kind | index("bench")))
               | "\(.target.name) \(.executable)"'
}

declare -A bin
for side in old new; do
    dir=$old
    [ "$side" = new ] && dir=$new
    while read -r name path; do
        bin[$side/$name]=$path
    done < <(build "$dir")
    for b in file_engine peers append_latency; do
        [ -x "${bin[$side/$b]:-}" ] || { echo "no $b binary for $side" >&2; exit 1; }
    done
done
echo "binaries:" >&2
for k in "${!bin[@]}"; do echo "  $k ${bin[$k]}" >&2; done

raw=$out/raw.tsv
: > "$raw"

# One build's round: every bench once, its lines turned into metrics.
run_side() {
    local round=$1 side=$2
    STOWAGE_BENCH_ROUNDS=1 STOWAGE_BENCH_HISTORY_MB=0 "${bin[$side/file_engine]}" |
        tee -a "$out/$side.log" |
        awk -v r="$round" -v s="$side" '
            /^run events, round/ {
                for (i = 1; i <= NF; i++) {
                    if ($i == "write+fdatasync") raw = $(i + 1)
                    if ($i == "appender") one = $(i + 1)
                    if ($i == "appenders") many = $(i + 1)
                }
                gsub(/[^0-9.]/, "", raw); gsub(/[^0-9.]/, "", one); gsub(/[^0-9.]/, "", many)
                printf "%s\t%s\tpeer/bare_fdatasync\t%s\tper_s\n", r, s, raw
                printf "%s\t%s\tfile_engine/append_1\t%s\tper_s\n", r, s, one
                printf "%s\t%s\tfile_engine/append_64\t%s\tper_s\n", r, s, many
                printf "%s\t%s\tfile_engine/group_commit_ratio\t%.3f\tx\n", r, s, many / one
                printf "%s\t%s\tfile_engine/group_commit_vs_bare\t%.3f\tx\n", r, s, many / raw
            }
            /^blob puts, round/ {
                for (i = 1; i <= NF; i++) {
                    if ($i == "writer") one = $(i + 1)
                    if ($i == "writers") many = $(i + 1)
                }
                gsub(/[^0-9.]/, "", one); gsub(/[^0-9.]/, "", many)
                printf "%s\t%s\tfile_engine/blob_put_256b_1\t%s\tper_s\n", r, s, one
                printf "%s\t%s\tfile_engine/blob_put_256b_64\t%s\tper_s\n", r, s, many
                printf "%s\t%s\tfile_engine/blob_put_ratio\t%.3f\tx\n", r, s, many / one
            }' >> "$raw"
    STOWAGE_BENCH_ROUNDS=1 STOWAGE_BENCH_CASES=$cases "${bin[$side/peers]}" |
        tee -a "$out/$side.log" |
        awk -v r="$round" -v s="$side" '
            /^[a-z0-9_]+: / { sub(/:$/, "", $1); c = $1 }
            /^  round [0-9]+: stowage/ {
                ours = $4; peer = $6; gsub(/,/, "", ours); gsub(/,/, "", peer)
                printf "%s\t%s\tpeers/%s\t%s\tper_s\n", r, s, c, ours
                printf "%s\t%s\tpeer/%s\t%s\tper_s\n", r, s, c, peer
            }' >> "$raw"
    STOWAGE_BENCH_ROUNDS=1 "${bin[$side/append_latency]}" |
        tee -a "$out/$side.log" |
        awk -v r="$round" -v s="$side" '
            /^metric / { printf "%s\t%s\tlatency/%s\t%s\t%s\n", r, s, $2, $3, $4 }' >> "$raw"
}

for round in $(seq 1 "$rounds"); do
    order="old new"
    [ $((round % 2)) -eq 0 ] && order="new old"
    for side in $order; do
        echo "round $round/$rounds: $side (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
        echo "# round $round load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/$side.log"
        run_side "$round" "$side"
    done
done

summarize "$raw" | tee "$out/summary.md"
echo "raw results: $out" >&2
