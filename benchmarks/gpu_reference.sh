#!/usr/bin/env bash
# On a machine with one GPU, ~9 minutes: the paper preset's speed (benchmarks/gpu_speed.py), then the paper's
# full runs that the notebooks read as reference runs, both at once on the one GPU:
#   characters: the paper preset, clipped to 20, all 20 epochs of 100,000 samples, every epoch's probe maps;
#   textile:    the textile paper preset, clipped to 20, as many of its 1,760 epochs as TEXTILE_TIME seconds of
#               training allow.
# Each run folder is packed as OUT/<name>.tar.gz, with the logs beside it.
#
#   bash benchmarks/gpu_reference.sh runs/gpu          # OUT; SPEED_TIME, RUN_TIME, TEXTILE_TIME to change
set -uo pipefail
OUT=${1:?usage: gpu_reference.sh OUT}
SPEED_TIME=${SPEED_TIME:-250}     # the speed script's limit, s
RUN_TIME=${RUN_TIME:-300}         # each reference run's limit (wall clock), s
TEXTILE_TIME=${TEXTILE_TIME:-170} # the textile run's training budget, s
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi -L 2>&1 | tee "$OUT/machine.txt"
python -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/machine.txt"
nproc | tee -a "$OUT/machine.txt"

timeout "$SPEED_TIME" python benchmarks/gpu_speed.py --variants eager compile cuda-graph compile+cuda-graph \
  --warm 20 --steps 600 --run-time 15 --json "$OUT/speed.json" >"$OUT/speed.log" 2>&1
echo "speed: exit $?" | tee -a "$OUT/machine.txt"

REF=$(mktemp -d)
timeout "$RUN_TIME" python -m sacnn_lab train --preset paper --grad-clip 20 --keep-best val_pointing_game \
  --workers 8 --out "$REF/characters-paper-gpu" >"$OUT/characters.log" 2>&1 &
CHARS=$!
timeout "$RUN_TIME" python -m sacnn_lab train --data textile --preset paper --grad-clip 20 --max-time "$TEXTILE_TIME" \
  --workers 4 --out "$REF/textile-paper-gpu" >"$OUT/textile.log" 2>&1
echo "textile: exit $?" | tee -a "$OUT/machine.txt"
wait $CHARS
echo "characters: exit $?" | tee -a "$OUT/machine.txt"
for run in characters-paper-gpu textile-paper-gpu; do
  [ -d "$REF/$run" ] && tar czf "$OUT/$run.tar.gz" -C "$REF" "$run"
done
ls -la "$OUT"
