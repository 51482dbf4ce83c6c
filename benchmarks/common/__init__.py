"""The floor the benchmarks share: each piece once, used by perf, perf_h2h, learned and the others.

- `comfyui`: ComfyUI started in-process with this pack loaded (tools/comfy_inprocess.py underneath);
- `counters`: what a sampler node call does (NFE, network passes, weight patches, loads, host reads);
- `memory`: peak memory of a run;
- `timing`: the timed runs (warm-up with counters, then repeats interleaved across configurations);
- `random_models`: full-size UNets and LoRAs with random weights, built once into .cache/perf/;
- `graph`: the one graph perf.py and perf_h2h.py sample, through the stock and W2SD nodes;
- `sampling`: a guider sampled through SamplerCustomAdvanced with KSampler's noise and sigmas;
- `intervals`: bootstrap intervals over seeded samples, plain and paired;
- `report`: the machine line, the code version, load average and results sections.

It imports the checkout's tests/ (fixtures) and tools/ (comfy_server, comfy_inprocess): a script puts
them and benchmarks/ on sys.path before it imports this package.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
