"""Triton Python-backend model: the exported caloreco network, run by torch or onnxruntime.

Written by ``caloreco export --triton-repo DIR --triton-network-backend python``: for
Triton servers without the pytorch (libtorch) or onnxruntime backend, e.g. the server
bundled in the ``nvidia-pytriton`` wheel. The work is done by
:class:`caloreco.serving.triton_repo.NetworkRunner` on this version's model file (named in
the config's ``parameters``): the Triton Python environment needs caloreco, torch (and
onnxruntime for an ONNX file) installed. On a GPU instance the TorchScript network runs on
that GPU.

Inputs: ``features`` and the map tensors of the pre-processing. Outputs: ``coords`` FP32
[N, D], ``beta`` FP32 [N] (and ``energy_factor`` FP32 [N] for a network with an energy
head, then ``signal`` FP32 [N] for one with a signal head).
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """One network call per request (all events of the request together)."""

    def initialize(self, args):
        from caloreco.serving.triton_repo import NetworkRunner, config_parameters, respond

        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        device = (f"cuda:{args['model_instance_device_id']}"
                  if args.get("model_instance_kind") == "GPU" else "cpu")
        self.runner = NetworkRunner.from_parameters(config_parameters(config), version_dir,
                                                    device=device)
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.respond = respond

    def execute(self, requests):
        return self.respond(pb_utils, requests, lambda read: self.runner(
            [read(name) for name in self.inputs]), self.outputs)
