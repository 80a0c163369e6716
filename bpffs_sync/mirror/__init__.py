"""The level-triggered engine: cgroupfs and bpffs walks, diff, apply, reconciler, watchers, trees, the loop."""
