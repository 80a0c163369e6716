"""The agent's commands, one module each (run, verify, status, clean, stop, demo, export), each with
`main(args) -> int`, which `cli.py` imports only when that command runs; common.py holds what they
share. The lab's commands (`bench`, `report`) are under `bpffs_sync/measure/`."""
