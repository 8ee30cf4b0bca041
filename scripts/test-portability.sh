#!/usr/bin/env bash
# The test suite under the kernels and thread counts of other machines: torch's AVX2 and portable (default)
# kernels, and one thread. Run from the repository root inside the test venv. Each run ends with pytest's
# "N passed" line; the script stops at the first failing variant.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
for variant in "ATEN_CPU_CAPABILITY=avx2" "ATEN_CPU_CAPABILITY=default" "OMP_NUM_THREADS=1"; do
    echo "== $variant"
    env "$variant" python -m pytest -q -p no:cacheprovider "$@"
done
