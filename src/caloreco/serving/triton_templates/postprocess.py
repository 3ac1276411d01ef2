"""Triton Python-backend model: network outputs -> cluster id per hit (object condensation).

Written by ``caloreco export --triton-repo``. The work is done by
:class:`caloreco.serving.triton_repo.Postprocessor` with the thresholds ``t_beta``,
``t_d`` and the rule ``assign`` of this model's config.pbtxt ``parameters``: the Triton Python environment needs
caloreco (and torch) installed.

Inputs: ``coords`` FP32 [N, D], ``beta`` FP32 [N], ``hit_event`` INT64 [N]. Outputs:
``CLUSTER_ID`` INT64 [N] (-1 = noise), ``BETA`` FP32 [N], ``COORDS`` FP32 [N, D].
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Condensation clustering of each request's hits, event by event."""

    def initialize(self, args):
        from caloreco.serving.triton_repo import (
            Postprocessor, config_parameters, from_triton, to_triton)

        config = json.loads(args["model_config"])
        self.postprocessor = Postprocessor.from_parameters(config_parameters(config))
        self.from_triton, self.to_triton = from_triton, to_triton

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                coords, beta, hit_event = (
                    self.from_triton(pb_utils.get_input_tensor_by_name(request, name))
                    for name in ("coords", "beta", "hit_event"))
                out = self.postprocessor(coords, beta, hit_event)
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    self.to_triton(pb_utils, k, v) for k, v in out.items()]))
            except Exception as exc:  # one bad request must not fail the others
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses
