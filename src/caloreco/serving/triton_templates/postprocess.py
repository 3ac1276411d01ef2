"""Triton Python-backend model: network outputs -> cluster id per hit (object condensation).

Written by ``caloreco export --triton-repo``. The work is done by
:class:`caloreco.serving.triton_repo.Postprocessor` with the thresholds ``t_beta``,
``t_d``, the rule ``assign``, the locality cut ``r_max``, the detector term
``position_scale`` and the left-over attachment ``attach_r``, ``attach_passes``,
``t_signal`` of this
model's config.pbtxt ``parameters``: the Triton
Python environment needs caloreco (and torch) installed.

Inputs: ``coords`` FP32 [N, D], ``beta`` FP32 [N], ``hit_event`` INT64 [N],
``hit_position`` FP32 [N, 3], ``hit_xyz`` FP32 [N, 3] (and ``energy_factor`` FP32 [N] from a
network with an energy head, ``signal`` FP32 [N] from one with a signal head). Outputs:
``CLUSTER_ID`` INT64 [N] (-1 = noise), ``BETA`` FP32 [N], ``COORDS`` FP32 [N, D] (and
``ENERGY_FACTOR``, ``SIGNAL`` FP32 [N], passed through).
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Condensation clustering of each request's hits, event by event."""

    def initialize(self, args):
        from caloreco.serving.triton_repo import Postprocessor, config_parameters, respond

        config = json.loads(args["model_config"])
        self.postprocessor = Postprocessor.from_parameters(config_parameters(config))
        self.respond = respond

    def execute(self, requests):
        return self.respond(pb_utils, requests, lambda read: self.postprocessor(
            read("coords"), read("beta"), read("hit_event"), read("hit_position"),
            read("hit_xyz"), read("energy_factor"), read("signal")))
