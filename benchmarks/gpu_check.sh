#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): on a GPU machine `bash benchmarks/gpu_check.sh`,
# in CI `bash benchmarks/gpu_check.sh --dry-run`. Uses $PYTHON (default python3): torch and
# numpy are all it needs besides ncood's source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
