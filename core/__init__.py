"""The floor under the services: what the worker, the API and the command line all stand on.

Nothing here imports ``consumer``, ``producer_api`` or ``calcstream``.
"""
