"""Triton Python-backend model: raw hits -> inputs of the exported caloreco network.

Written by ``caloreco export --triton-repo``. The work is done by
:class:`caloreco.serving.triton_repo.Preprocessor`, configured by the ``parameters`` of this
model's config.pbtxt (hit encoding, network name and configuration, map names): the Triton
Python environment needs caloreco (and torch) installed.

Inputs: ``FEATURES`` FP32 [N, 7] raw hit columns (energy, x, y, z, layer, time, cell_type),
``EVENT_OFFSETS`` INT64 [B + 1] (optional). Outputs: ``features`` FP32 [N, F],
the network's map tensors and ``hit_event`` INT64 [N].
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Builds the kernel maps of each request's events (several events per request are
    processed together)."""

    def initialize(self, args):
        from caloreco.serving.triton_repo import (
            Preprocessor, config_parameters, from_triton, to_triton)

        config = json.loads(args["model_config"])
        self.preprocessor = Preprocessor.from_parameters(config_parameters(config))
        self.outputs = [o["name"] for o in config["output"]]
        self.from_triton, self.to_triton = from_triton, to_triton

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                features = self.from_triton(pb_utils.get_input_tensor_by_name(request, "FEATURES"))
                offsets = pb_utils.get_input_tensor_by_name(request, "EVENT_OFFSETS")
                out = self.preprocessor(features,
                                        None if offsets is None else self.from_triton(offsets))
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    self.to_triton(pb_utils, name, out[name]) for name in self.outputs]))
            except Exception as exc:  # one bad request must not fail the others
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses
