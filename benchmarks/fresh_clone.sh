#!/usr/bin/env bash
# The README's two commands on a fresh clone, timed: the README's timing table is copied from
# what this prints.
#
#   bash benchmarks/fresh_clone.sh [REPOSITORY]     # default: this checkout (its committed HEAD)
#
# Clones into a temporary folder, runs `make setup` (TeX when missing, the virtualenv: timed
# apart), then `make demo` and `make test` exactly as the README says, and prints the date, the
# CPU, the load before and after, the demo part (the Makefile's own "demo finished in N s"),
# the wall time of each command and the test count. The clone is removed afterwards unless
# KEEP=1. Exit status: that of the first command that failed.
set -uo pipefail
repository=${1:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}
work=$(mktemp -d "${TMPDIR:-/tmp}/ncood-fresh.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
git clone -q "$repository" "$work/ncood" || exit 1
cd "$work/ncood" || exit 1

load() { cut -d' ' -f1-3 /proc/loadavg; }
seconds() { local start=$1; echo "$(( $(date +%s) - start ))"; }
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)

echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "commit:  $(git rev-parse --short HEAD) ($(git log -1 --format=%s | cut -c1-60))"
echo "cpu:     ${cpu:-unknown}, $(nproc) cores; load before: $(load)"

start=$(date +%s)
make setup >setup.log 2>&1 || { tail -n 20 setup.log; exit 1; }
echo "setup:   $(seconds "$start") s (TeX if missing, the virtualenv)"

start=$(date +%s)
make demo >demo.log 2>&1
demo_status=$?
demo_wall=$(seconds "$start")
demo_part=$(sed -n 's/^demo finished in \([0-9]*\) s$/\1/p' demo.log)
[ $demo_status = 0 ] || tail -n 20 demo.log
pages=$(pdfinfo reports/ncood-report-fr.pdf 2>/dev/null | sed -n 's/^Pages: *//p')
echo "demo:    ${demo_part:-?} s demo part, ${demo_wall} s make demo; load after: $(load); PDF pages: ${pages:-none}"

start=$(date +%s)
make test >test.log 2>&1
test_status=$?
test_wall=$(seconds "$start")
summary=$(grep -E '^[0-9]+ (passed|failed)|[0-9]+ passed|[0-9]+ failed' test.log | tail -n 1)
[ $test_status = 0 ] || grep -E '^(FAILED|ERROR)' test.log | head -n 20
echo "test:    ${test_wall} s make test; ${summary:-no summary}; load after: $(load)"

[ $demo_status = 0 ] || exit $demo_status
exit $test_status
