"""Triton Python-backend model: raw hits -> inputs of the exported caloreco network.

Written by ``caloreco export --triton-repo``. The work is done by
:class:`caloreco.serving.triton_repo.Preprocessor`, configured by the ``parameters`` of this
model's config.pbtxt (hit encoding, network name and configuration, map names): the Triton
Python environment needs caloreco (and torch) installed.

Inputs: ``FEATURES`` FP32 [N, 7] raw hit columns (energy, x, y, z, layer, time, cell_type),
``EVENT_OFFSETS`` INT64 [B + 1] (optional). Outputs: ``features`` FP32 [N, F],
the network's map tensors, ``hit_event`` INT64 [N], ``hit_position`` FP32 [N, 3] (the
hits' projected positions, for the locality cut of the post-processing) and ``hit_xyz``
FP32 [N, 3] (the hits' x, y, z, for its left-over attachment).
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Builds the kernel maps of each request's events (several events per request are
    processed together)."""

    def initialize(self, args):
        from caloreco.serving.triton_repo import Preprocessor, config_parameters, respond

        config = json.loads(args["model_config"])
        self.preprocessor = Preprocessor.from_parameters(config_parameters(config))
        self.outputs = [o["name"] for o in config["output"]]
        self.respond = respond

    def execute(self, requests):
        return self.respond(pb_utils, requests, lambda read: self.preprocessor(
            read("FEATURES"), read("EVENT_OFFSETS")), self.outputs)
