#!/usr/bin/env bash
# The convergence fuzzer (src/pgtests/fuzz.rs), long: rounds of at most 40 s of random
# concurrent writes, runs and pushes, each checked against the invariants, for N minutes.
#
#   bash tests/fuzz.sh --minutes N [--seed S]
#
# Without --seed a seed is drawn (printed at the start and in any failure); the same
# seed repeats every thread's sequence of operations (their interleaving is the OS's).
# Runs `scripts/test.sh fuzz` under the test lock (/tmp/sync_engine_pgtest.lock), so it
# builds and installs the test build like every test run. The short version (40 s, one
# round) runs in the normal suite.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
minutes=""
seed=""
while (($#)); do
    case $1 in
        --minutes) (($# >= 2)) || usage; minutes=$2; shift 2 ;;
        --seed) (($# >= 2)) || usage; seed=$2; shift 2 ;;
        -h | --help) usage ;;
        *) warn "unknown argument '$1'"; usage ;;
    esac
done
[[ -z $minutes ]] && minutes=1
[[ $minutes =~ ^[1-9][0-9]*$ ]] || die "--minutes must be a positive whole number (got '$minutes')"
if [[ -z $seed ]]; then
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fi
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a non-negative whole number (got '$seed')"
say "fuzzing for $minutes minute(s), FUZZ_SEED=$seed"
started=$SECONDS
log=$REPO_ROOT/target/fuzz.log
mkdir -p "$(dirname "$log")"
: >"$log"
set +e
FUZZ_LOG=$log FUZZ_SECONDS=$((minutes * 60)) FUZZ_SEED=$seed flock /tmp/sync_engine_pgtest.lock bash scripts/test.sh fuzz
rc=$?
set -e
rounds=$(grep -c '^fuzz round ' "$log" || true)
if ((rc == 0)); then
    say "fuzz PASSED: seed $seed, $minutes minute(s), $rounds rounds checked ($((SECONDS - started)) s with the build)"
else
    warn "fuzz FAILED: seed $seed (repeat: bash tests/fuzz.sh --minutes $minutes --seed $seed); log: target/test.log, rounds: target/fuzz.log"
fi
tail -n 1 "$log" || true
exit "$rc"
