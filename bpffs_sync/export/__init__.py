"""`bpffs-sync export`: a Prometheus endpoint for a node.

    mirror files (bpffs, read by dir fd) --files.py--> readings --render.py--> per-cgroup families (text)
    daemon telemetry, /proc/locks, kernel links, verify (slow thread) --health.py--> prometheus_client families
    server.py: one HTTP server (127.0.0.1 by default) serving both on /metrics
    workload.py: unit/slice and pod_uid/container_id/qos_class labels from a cgroup's path (render.py adds them)

The per-cgroup figures come from the mirror's own files (the product's interface), parsed with
histogram.parse_stat, not from the BPF maps: what a scrape shows is what `cat` shows.
"""
