"""ONNX Runtime's workers spin within a run and stop when it returns (anchor_edge/backends/ort.py).

The pipeline alternates AnchorNet and the downstream network: a session whose
workers go on spinning after its run takes the cores from the next model. An
idle runner must therefore use no CPU, which is measured here as CPU time of
this process (not wall time, so another job on the machine does not change it):
with spinning left on after the run, this check saw about 40 ms of CPU in the
0.3 s of idling, against 0.1 ms with the workers stopped.
"""

from __future__ import annotations

import time

import numpy as np

from anchor_edge.backends.ort import OrtRunner
from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.choices import Role


def test_an_idle_runner_leaves_the_cores_to_the_other_model(small_bundle):
    with OrtRunner(load_bundle(small_bundle).path(Role.ANCHORNET), threads=2) as runner:
        image = np.zeros((1, 3, 224, 224), np.float32)
        runner.run({"image": image})
        runner.run({"image": image})
        before = time.process_time()
        time.sleep(0.3)
        idle_cpu_s = time.process_time() - before
    assert idle_cpu_s < 0.01, f"{idle_cpu_s * 1e3:.1f} ms of CPU while idle: the workers went on spinning"
