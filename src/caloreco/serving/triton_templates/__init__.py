"""``model.py`` files of the Triton Python-backend models, copied by
:func:`caloreco.serving.triton_repo.build_triton_repo` into a model repository.

They import ``triton_python_backend_utils``, which only exists inside a Triton server:
they are read as text here, not imported.
"""
