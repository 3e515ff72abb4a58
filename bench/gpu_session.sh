#!/usr/bin/env bash
# One command for a session that is lent a GPU (device tool): everything the GPU issue and the
# performance issue ask of a real device, in one batch, results under $OUT (or bench/results/gpu-run).
#   bash bench/gpu_session.sh            # on the device machine, from the repository root
# Steps: environment record, pytest -m gpu, compute-sanitizer memcheck and racecheck (plus synccheck)
# over the GPU tests, the harness's own GPU tests (the CuPy built-in baselines against the
# NumPy reference on the device, the peak-memory readers), then the GPU benchmarks (ours vs the CuPy
# built-ins vs PyTorch, attention's peak memory). Each step's log is kept; a failing step does not stop
# the next.
set -uo pipefail
# The device image has CuPy, NumPy, Numba, SymPy, rich, pytest and hypothesis, but not plotext (used by
# worked_examples): carry its wheel as the device tool's README describes, or the worked-example GPU
# tests fail to import.
out="${OUT:-bench/results/gpu-run}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
  $py -c "import cupy, numpy, numba, sys; print('python', sys.version.split()[0]); print('cupy', cupy.__version__); print('numpy', numpy.__version__); print('numba', numba.__version__); print('cuda runtime', cupy.cuda.runtime.runtimeGetVersion()); print('driver', cupy.cuda.runtime.driverGetVersion())" 2>&1
  $py -c "import torch; print('torch', torch.__version__, torch.version.cuda)" 2>&1
} > "$out/environment.txt"

step() {  # name, command...
  local name=$1; shift
  local start=$SECONDS
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - start)) s: $(tail -n 1 "$out/$name.log")" | tee -a "$out/summary.txt"
}

step gpu-tests $py -m pytest -q -m gpu -p no:cacheprovider tests/cuda tests/nn tests/worked_examples
step memcheck compute-sanitizer --tool memcheck --error-exitcode 9 $py -m pytest -q -m gpu -x -p no:cacheprovider tests/cuda -k "not slow"
step racecheck compute-sanitizer --tool racecheck --error-exitcode 9 $py -m pytest -q -m gpu -x -p no:cacheprovider tests/cuda -k "softmax or reduce or dense or conv2d or attention or batchnorm or losses"
step synccheck compute-sanitizer --tool synccheck --error-exitcode 9 $py -m pytest -q -m gpu -x -p no:cacheprovider tests/cuda -k "not slow"
step bench-tests $py -m pytest -q -m gpu -p no:cacheprovider tests/test_bench.py
step bench $py -m bench --device gpu --out "$out/bench-gpu.json"
cat "$out/summary.txt"
