"""Per-controller cgroup-v1 knowledge: discovery, co-mounted and named hierarchies, naming.

Empty until the v1 issue lands: one module per controller with the same small interface, chosen
from a registry; an unknown controller raises KernelUnsupported.
"""
