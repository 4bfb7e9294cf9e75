"""What every measurement stands on: the plan, child processes, the calcstream stack and the
peers as targets, load generators (wrk, the open-loop client, the probe), the WebSocket
observer, request bodies, statistics and py-spy profiles.

Nothing here imports a workload, a tool or the report.
"""
