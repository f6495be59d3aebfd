#!/usr/bin/env bash
# Runs every benchmark and regenerates BENCHMARKS.md at the repository root: the machine,
# date, commit and build; a table of every figure (its RESULT line: value, target, met or
# not, which bench); then per bench its own summary (rounds, medians, where the time goes).
#
#   bash bench/report.sh                      all benches, full sizes (sync_bench alone takes
#                                             6-12 minutes of it)
#   QUICK=1 bash bench/report.sh              small sizes, a few minutes in all (below); the
#                                             report says it is a QUICK run
#   ONLY="capture offline" bash bench/report.sh   just these benches (names: offline notify
#                                             capture sync load); the other benches' sections are
#                                             kept as they are in the existing BENCHMARKS.md
#   SKIP_INSTALL=1   do not build and install the release build first
#   NO_LOCK=1        the caller already holds /tmp/sync_engine_pgtest.lock (otherwise each
#                    bench, and the install, run under it: `flock` would wait for ourselves)
#   PORT_BASE=56500 DIR_PREFIX=/var/tmp/se_bench_   bench i runs its cluster on port
#                    PORT_BASE + i, in DIR_PREFIX<name>
#
# QUICK sizes: offline ROWS=2000 BACKLOG=20000; notify EVENTS=2000 ROUNDS=5;
# capture DURATION=5 ROUNDS=2 ROWS=10000 MIXED_ROUNDS=1 BULK_ROUNDS=3;
# sync ROWS=10000 ROUNDS1=3 SMALL=1000 BIG=20000 REPEATS=5 LOAD_ROWS=20000 LOAD_ROUNDS=3;
# load DURATION=30 WARMUP=8.
# Exit status: 1 if a bench failed (its section then says so, with the end of its stderr);
# missed targets are not failures here (they are in the table).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

LOCK=/tmp/sync_engine_pgtest.lock
REPORT=$REPO_ROOT/BENCHMARKS.md
PORT_BASE=${PORT_BASE:-56500}
DIR_PREFIX=${DIR_PREFIX:-/var/tmp/se_bench_}
BENCHES=(offline notify capture sync load)
declare -A SCRIPT=([offline]=bench/offline_bench.sh [notify]=bench/notify_bench.sh
    [capture]=bench/capture_bench.sh [sync]=bench/sync_bench.sh [load]=bench/load_bench.sh)
declare -A QUICK_SIZES=([offline]="ROWS=2000 BACKLOG=20000" [notify]="EVENTS=2000 ROUNDS=5"
    [capture]="DURATION=5 ROUNDS=2 ROWS=10000 MIXED_ROUNDS=1 BULK_ROUNDS=3"
    [sync]="ROWS=10000 ROUNDS1=3 SMALL=1000 BIG=20000 REPEATS=5 LOAD_ROWS=20000 LOAD_ROUNDS=3"
    [load]="DURATION=30 WARMUP=8")
[[ $PORT_BASE =~ ^[0-9]+$ ]] || die "PORT_BASE must be a port number (got '$PORT_BASE')"

run=()
if [[ -n ${ONLY:-} ]]; then
    for b in $ONLY; do
        [[ -n ${SCRIPT[$b]:-} ]] || die "ONLY: unknown bench '$b' (known: ${BENCHES[*]})"
        run+=("$b")
    done
else
    run=("${BENCHES[@]}")
fi
locked() { if [[ ${NO_LOCK:-0} == 1 ]]; then "$@"; else flock "$LOCK" "$@"; fi; }

out=$(mktemp -d /tmp/se_bench_report.XXXXXX)
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() { rm -rf -- "$out"; }
trap cleanup EXIT

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    SETUP_SKIP_BUILD=1 bash scripts/setup.sh
    locked bash scripts/install-ext.sh
fi

mode=full
[[ ${QUICK:-0} != 1 ]] || mode=QUICK
failed=0
for i in "${!BENCHES[@]}"; do
    b=${BENCHES[i]}
    [[ " ${run[*]} " == *" $b "* ]] || continue
    sizes=""
    [[ $mode == full ]] || sizes=${QUICK_SIZES[$b]}
    say "$b: ${SCRIPT[$b]} ${sizes:+($sizes)}"
    # shellcheck disable=SC2086  # sizes is a list of NAME=value words
    if locked env SKIP_INSTALL=1 BENCH_DIR="$DIR_PREFIX$b" BENCH_PORT=$((PORT_BASE + i)) $sizes \
        bash "${SCRIPT[$b]}" >"$out/$b.out" 2>"$out/$b.err"; then
        echo 0 >"$out/$b.rc"
    else
        echo $? >"$out/$b.rc"
        failed=1
        warn "$b failed (exit $(cat "$out/$b.rc")); the end of its stderr:"
        tail -n 20 "$out/$b.err" >&2
    fi
    grep '^RESULT ' "$out/$b.out" || true
done

# section NAME: this run's section of bench NAME (markdown, between its markers)
section() {
    local b=$1 rc sizes=""
    rc=$(cat "$out/$b.rc")
    [[ $mode == full ]] || sizes=" (${QUICK_SIZES[$b]})"
    echo "<!-- bench:$b begin -->"
    echo "## $b: \`${SCRIPT[$b]}\`"
    echo
    echo "Run $(awk '/^date: / { print $2; exit }' "$out/$b.out"), commit $(awk '/^commit: / { print $2; exit }' "$out/$b.out"), mode $mode$sizes, exit status $rc."
    echo "What each figure measures and how: the header comment of \`${SCRIPT[$b]}\`."
    echo
    echo '```text'
    # progress of the cluster script is noise here
    grep -v -E '^==> cluster .* stopped|^==> stopping the previous cluster' "$out/$b.out" || true
    if [[ $rc != 0 ]]; then
        echo "--- FAILED (exit $rc); the end of its stderr:"
        tail -n 20 "$out/$b.err"
    fi
    echo '```'
    echo "<!-- bench:$b end -->"
}
# old_section NAME: bench NAME's section in the existing BENCHMARKS.md (empty if none)
old_section() {
    [[ -f $REPORT ]] || return 0
    awk -v b="$1" '$0 == "<!-- bench:" b " begin -->" { on = 1 } on { print } $0 == "<!-- bench:" b " end -->" { on = 0 }' "$REPORT"
}
for b in "${BENCHES[@]}"; do
    if [[ -f $out/$b.rc ]]; then
        section "$b" >"$out/$b.md"
    else
        old_section "$b" >"$out/$b.md"
        if [[ ! -s $out/$b.md ]]; then
            # shellcheck disable=SC2016  # the backquotes are markdown
            printf '<!-- bench:%s begin -->\n## %s: `%s`\n\nNot run yet: `ONLY=%s bash bench/report.sh`.\n<!-- bench:%s end -->\n' \
                "$b" "$b" "${SCRIPT[$b]}" "$b" "$b" >"$out/$b.md"
        fi
    fi
done

# the header lines of the first bench run now (machine, build are the same for all)
first=${run[0]}
hdr() { awk -v k="$1:" '$1 == k { $1 = ""; sub(/^ +/, ""); print; exit }' "$out/$first.out"; }
{
    echo "# Benchmarks"
    echo
    echo "Generated by \`bash bench/report.sh\`; do not edit by hand. Regenerate all of it with"
    echo "\`bash bench/report.sh\` (full sizes), or \`QUICK=1 bash bench/report.sh\` (small sizes, a few"
    echo "minutes), or only some benches with \`ONLY=\"capture offline\" bash bench/report.sh\` (the other"
    echo "sections stay as they are). Each figure is a ratio or rate against a baseline measured in"
    echo "the same run; the bench scripts' header comments say how."
    echo
    if [[ $mode == QUICK ]] || grep -q ', mode QUICK' "$out"/*.md; then
        echo "**Some figures are from a QUICK run** (\`QUICK=1\`, marked in the table): small sizes and few, short rounds, to check that the"
        echo "benches work. Those figures are noisy and not comparable with the targets' full sizes."
        echo "In particular figure 1 of sync_bench: replication's apply has a fixed latency that weighs"
        echo "far more at 10,000 rows than at the target's 100,000, so its QUICK ratios flatter"
        echo "sync_engine (a larger run on 2026-12-02, 100,000 rows of 13 columns, measured sync_execute"
        echo "at 2.1x replication for the identity config and 4.4x for the mapped one; figure 4 at"
        echo "1,000,000 rows was 13.7). Run \`bash bench/report.sh\` for figures to hold against the targets."
        echo
    fi
    echo "Figure 6 of sync_bench (\`fig6_end_to_end_vs_bucardo\`) compares sync_engine with a real peer,"
    echo "Bucardo 5.6 (a trigger-based multi-source sync), on the same UPDATE. They differ in what they"
    echo "do with a row changed on both sides before a sync (a conflict):"
    echo
    echo "- **Bucardo** (\`conflict_strategy = bucardo_latest\`): latest wins, per table, by"
    echo "  transaction start time: the row of the database whose transaction began last is copied"
    echo "  whole over the other; the losing values are kept nowhere."
    echo "- **sync_engine**: a per-field three-way merge against the link's base: fields changed on"
    echo "  one side only are all kept; a field changed on both sides is decided by the config's"
    echo "  strategy (\`latest_wins\` by the change times, \`source_wins\`, \`target_wins\`, or"
    echo "  \`manual\`), and the losing value is kept in \`sync_conflicts\` (resolvable later with"
    echo "  \`sync_resolve_conflict\`)."
    echo
    echo "Convergence fuzzing is a test, not a bench (\`bash tests/fuzz.sh --minutes N [--seed S]\`);"
    echo "its last long run (2026-12-02, 10 minutes, seed 1057634051): 15 rounds, 0 problems, over"
    echo "21,321 transactions and 1,881 pushes (docs/reliability.md has the counts)."
    echo
    echo "- machine: $(hdr machine)"
    echo "- date: $(hdr date) (benches run now: ${run[*]}$(
        ((${#run[@]} == ${#BENCHES[@]})) || echo "; the other sections are from earlier runs, each with its own Run line"))"
    echo "- commit: $(hdr commit)"
    echo "- build: $(hdr build)"
    echo
    echo "| figure | value | target | met | bench | run |"
    echo "|---|---|---|---|---|---|"
    for b in "${BENCHES[@]}"; do
        when=$(awk '/^Run / { print $2, $6; exit }' "$out/$b.md" | tr -d ',')
        { grep '^RESULT ' "$out/$b.md" || true; } | sed -E 's/^RESULT name=([^ ]+) value=([^ ]+) target=([<>=]+)([^ ]+) (.*)$/\1 \2 \3 \4 \5/' |
            while read -r name value op target verdict; do
                echo "| $name | $value | $op $target | $verdict | $b | ${when:-?} |"
            done
    done
    for b in "${BENCHES[@]}"; do
        echo
        cat "$out/$b.md"
    done
} >"$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
say "wrote ${REPORT#"$REPO_ROOT"/} ($(grep -c '^| [a-z0-9_]* | ' "$REPORT") figures)"
exit "$failed"
