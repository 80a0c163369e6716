"""The ways a mirror is kept: user-space pins (stock kernel) and the kernel series (Approach 1, 2)."""
